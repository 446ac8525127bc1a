"""The training loop: optimiser steps on a problem's weighted loss, every technique a callback.

:class:`Trainer` turns its :class:`~kanpde.training.config.TrainerConfig` into a list of callbacks
(:meth:`Trainer.default_callbacks`), checks them against the model and problem, and runs
:meth:`Trainer.fit`.  A new technique is a new module in :mod:`kanpde.training.callbacks` and one
entry in the config; the loop does not change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from kanpde.models import native
from kanpde.models.jet import Jet, Pairs, supports_jet
from kanpde.models.kan import KANLayer
from kanpde.pde.derivatives import resolve_backend
from kanpde.pde.problem import Points, Problem
from kanpde.training.callbacks.balance import LossBalance
from kanpde.training.callbacks.base import Callback, CallbackList, StepFunction
from kanpde.training.callbacks.causal import CausalWeights
from kanpde.training.callbacks.divergence import DivergenceGuard
from kanpde.training.callbacks.grid_extension import GridExtension, extensions, schedule_notes
from kanpde.training.callbacks.knots import KnotRefinement
from kanpde.training.callbacks.history import HistoryRecorder
from kanpde.training.callbacks.lr_schedule import LRSchedule
from kanpde.training.callbacks.nonfinite import NonFiniteRollback
from kanpde.training.callbacks.optimizer_switch import SwitchOptimizer
from kanpde.training.callbacks.progress import ProgressBar
from kanpde.training.callbacks.pruning import Prune
from kanpde.training.callbacks.rad import RAD
from kanpde.training.callbacks.rba import ResidualAttention
from kanpde.training.callbacks.sparsity import SparsityPenalty
from kanpde.training.callbacks.symbolic import SymbolicStep
from kanpde.training.checkpoint import check_matches, load_checkpoint, restore
from kanpde.training.config import TrainerConfig
from kanpde.training.distributed import Shards
from kanpde.training.optimizers import LastEvaluation, check_dense_size, make_optimizer, optimizer_step
from kanpde.training.state import TrainResult, TrainState


class CompiledJet(nn.Module):
    """``model``'s forward derivative pass under ``torch.compile``, without touching ``model`` itself.

    Partials above second order need the jet's graph to x: that variant stays eager (compiling it
    crashed torch 2.13's CPU backend with heap corruption).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.compiled = torch.compile(model.forward_jet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def jet_supported(self) -> bool:
        return True

    def forward_jet(self, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        return (self.model.forward_jet if x.requires_grad else self.compiled)(x, pairs)


class Trainer:
    """Minimises sum_t weight_t * MSE_t over a problem's loss terms.

    ``Trainer(steps=500, optimizer="adam")`` takes the settings of :class:`TrainerConfig` (their
    defaults are the CLI's), or ``Trainer(config)``.  ``callbacks`` are run after the built-in ones;
    a plain function ``fn(step, model)`` is called after every step.
    """

    def __init__(self, config: TrainerConfig | None = None, *, callbacks: Iterable[Callback | Callable] = (),
                 **settings: Any) -> None:
        if config is not None and settings:
            raise ValueError(f"Trainer takes a TrainerConfig or settings, not both (got {sorted(settings)} too)")
        self.config = config if config is not None else TrainerConfig(**settings)
        self.callbacks: list[Callback | Callable] = list(callbacks)

    def __getattr__(self, name: str) -> Any:  # trainer.steps, trainer.optimizer, ...: the config's values
        if name != "config" and "config" in self.__dict__ and hasattr(self.config, name):
            return getattr(self.config, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def default_callbacks(self) -> list[Callback]:
        """The techniques the config turns on, in the order their hooks run."""
        c = self.config
        cbs: list[Callback] = [NonFiniteRollback()]
        if c.divergence > 0:
            cbs.append(DivergenceGuard(c.divergence))
        if c.grid_extension.at:
            cbs.append(GridExtension(c))
        if c.knots.method != "none":
            cbs.append(KnotRefinement(c.knots, c.steps))
        if c.optimizer.startswith("adam_"):
            cbs.append(SwitchOptimizer(c.adam_steps))
        if c.prune_at is not None:
            cbs.append(Prune(c.prune_at, c.prune_threshold))
        if c.symbolic.at is not None:
            cbs.append(SymbolicStep(c.symbolic))
        if c.sampler.adaptive == "rad":
            cbs.append(RAD(c.sampler))
        if c.adam_end > 0:
            cbs.append(LRSchedule(c))
        if c.loss.rba:
            cbs.append(ResidualAttention(c.loss))
        if c.loss.causal.eps > 0:
            cbs.append(CausalWeights(c.loss.causal))
        if c.loss.balance != "none":
            cbs.append(LossBalance(c.loss))
        if c.reg.l1 > 0 or c.reg.entropy > 0:
            cbs.append(SparsityPenalty(c.reg))
        return cbs + [HistoryRecorder(c.log_every, c.steps), ProgressBar(c.steps, c.progress)]

    def all_callbacks(self, extra: Iterable[Callback] = ()) -> CallbackList:
        user = [cb if isinstance(cb, Callback) else StepFunction(cb) for cb in self.callbacks]
        return CallbackList(self.default_callbacks() + user + list(extra))

    def fit(self, problem: Problem, model: nn.Module, points: Points, x_eval: torch.Tensor | None = None,
            u_ref: torch.Tensor | None = None, seed: int = 0, resume: str | Path | None = None,
            extra_callbacks: Iterable[Callback] = (), shards: Shards | None = None) -> TrainResult:
        """Train ``model`` (in place) on ``points``; errors on ``x_eval`` are logged.

        Errors are taken against ``u_ref`` (m, n_out) when given (reference data), else against
        ``problem.exact``.  The problem's unknown coefficients train with the model.  ``seed`` seeds
        what training draws (RAD's points).  ``resume`` continues from a checkpoint of this same run
        (:mod:`kanpde.training.checkpoint`); ``extra_callbacks`` run after all others (checkpoints).
        ``shards``: ``points`` are this rank's share in data-parallel training (:mod:`kanpde.training.distributed`).
        A non-finite loss stops training with the model restored to its last finite state and
        ``status="failed"``; the message names the step.
        """
        state = self._start(problem, model, points, x_eval, u_ref, seed, extra_callbacks)
        state.shards = shards
        cbs = state.callbacks
        cbs.call("on_fit_start", state)
        state.new_optimizer()
        done = 0
        if resume is not None:
            payload = load_checkpoint(resume)
            check_matches(payload, state, resume)
            restore(state, payload)
            done = state.step + 1
        for state.step in range(done, self.config.steps):
            cbs.call("on_step_start", state)
            if state.stop:
                break
            state.first_squares = None
            memo = state.last_evaluation if cbs.static_objective else None
            state.loss, state.terms = optimizer_step(state.optimizer, lambda: self.loss(state), state.shards,
                                                     memo, lambda: state.last_squares)
            if state.first_squares is None and memo is not None:  # the step began from the kept evaluation
                state.first_squares = memo.extra  # type: ignore[assignment]
            cbs.call("on_step_end", state)
            if state.status in ("ok", "interrupted"):  # a failed step does not count
                done = state.step + 1
            if state.stop:
                break
        steps_done = state.step = done
        cbs.call("on_stage_end", state)
        cbs.call("on_fit_end", state)
        return state.result(steps_done)

    @staticmethod
    def loss(state: TrainState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted loss and each term's plain mean square (what the history logs)."""
        squares = state.problem.pointwise(state.loss_model, state.points, state.derivatives)
        terms = {t: state.mean(t, v) for t, v in squares.items()}
        state.last_squares = {t: v.detach() for t, v in squares.items()}
        if state.first_squares is None:
            state.first_squares = state.last_squares
        weighted = state.callbacks.pipe("on_squares", state, squares)
        objective = state.callbacks.pipe("on_objective", state, {t: state.mean(t, v) for t, v in weighted.items()}, weighted)
        loss = sum(state.problem.weights[t] * v for t, v in objective.items())
        for cb in state.callbacks:
            for name, value in cb.extra_terms(state).items():
                terms[name] = value
                loss = loss + value
        return loss, terms

    def _start(self, problem: Problem, model: nn.Module, points: Points, x_eval: torch.Tensor | None,
               u_ref: torch.Tensor | None, seed: int, extra: Iterable[Callback]) -> TrainState:
        """Check everything, move model, unknowns and points to the training device and dtype."""
        callbacks = self.all_callbacks(extra)
        self.check_model(model, callbacks)
        self.check_problem(problem, callbacks)
        dev, dt = self.torch_device, self.torch_dtype
        model.to(device=dev, dtype=dt)
        problem.unknowns.to(device=dev, dtype=dt)
        pts = {t: {k: v.to(device=dev, dtype=dt) for k, v in p.items()} for t, p in points.items()}
        u_exact = None
        if x_eval is not None:
            x_eval = x_eval.to(device=dev, dtype=dt)
            u_exact = problem.exact(x_eval) if u_ref is None else u_ref.to(device=dev, dtype=dt)
        return TrainState(config=self.config, problem=problem, model=model, loss_model=CompiledJet(model) if self.config.compile else model,
                          trainable=nn.ModuleDict({"model": model, "unknowns": problem.unknowns}), points=pts, callbacks=callbacks,
                          derivatives=self.config.derivatives, seed=int(seed), initial_points={t: dict(p) for t, p in pts.items()},
                          x_eval=x_eval, u_exact=u_exact,
                          against_reference=u_ref is not None)

    # -- checks and descriptions, before training ------------------------------------------------

    def check_model(self, model: nn.Module, callbacks: CallbackList | None = None) -> None:
        """Fail before training if a technique (or the derivative back end) cannot work on ``model``."""
        try:
            resolve_backend(model, self.config.derivatives)
        except ValueError as e:
            raise ValueError(f"trainer.{e}") from None
        if self.config.compile and not supports_jet(model):
            raise ValueError(f"trainer.compile compiles the forward derivative pass, which {type(model).__name__} lacks; set trainer.compile=false")
        check_dense_size(self.config, model)
        for cb in callbacks or self.all_callbacks():
            cb.check_model(model)

    def check_problem(self, problem: Problem, callbacks: CallbackList | None = None) -> None:
        """Fail before training if a technique does not apply to ``problem``."""
        for cb in callbacks or self.all_callbacks():
            cb.check_problem(problem)

    @property
    def torch_device(self) -> torch.device:
        """The device training runs on."""
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.config.dtype)

    def derivative_backend(self, model: nn.Module) -> str:
        """The back end residual derivatives use on ``model``: ``forward`` or ``autograd``."""
        return resolve_backend(model, self.config.derivatives)

    def uses_kernel(self, model: nn.Module) -> bool:
        """Whether ``model``'s B-spline KAN layers run their derivative pass in a kernel (the C kernel on the
        CPU, the Triton kernel on CUDA; compiled or not): forward derivatives, and a kernel for the device and dtype."""
        if self.derivative_backend(model) != "forward":
            return False
        probe = torch.empty(0, dtype=self.torch_dtype, device=self.torch_device)
        return any(isinstance(m, KANLayer) and m.kernel_applies(probe) for m in model.modules())

    def kernel_name(self) -> str:
        """What :meth:`uses_kernel` refers to on this device: ``CPU kernel`` or ``Triton kernel``."""
        return "Triton kernel" if self.torch_device.type == "cuda" else "CPU kernel"

    def extensions_for(self, model: nn.Module) -> dict[int, int]:
        """The extensions this schedule makes on ``model``: ``{step: new grid}``."""
        return extensions(self.config, model)

    def schedule_notes(self, model: nn.Module) -> list[str]:
        """What a user should know about the grid schedule on ``model`` (skipped or inexact extensions)."""
        return schedule_notes(self.config, model)

    def make_optimizer(self, model: nn.Module, step: int) -> torch.optim.Optimizer:
        """The optimiser for ``model``'s parameters at ``step`` (Adam or the second-order method, by the schedule)."""
        return make_optimizer(self.config, model, step)
