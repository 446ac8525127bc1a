"""The callback protocol: a training technique is a :class:`Callback` that overrides the hooks it needs.

The loop (:mod:`kanpde.training.trainer`) calls the hooks in this order::

    check_model, check_problem          before anything is moved or trained (raise ValueError)
    on_fit_start
    per step:  on_step_start            change the model, points, optimiser or learning rate
               (loss evaluations)        on_squares -> on_objective -> extra_terms
               on_step_end              check, update weights, record
    on_fit_end

and, when a callback asks for them through the state, ``on_stage_end`` (just before the model
changes: a stage of the KAN paper's scaling plots), ``on_model_change`` (after it changed) and
``on_resample`` (after the PDE points moved).  Callbacks see and change one shared
:class:`~kanpde.training.state.TrainState`; the order of ``Trainer.callbacks`` is the order of calls.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

if TYPE_CHECKING:
    from kanpde.pde.problem import Problem
    from kanpde.training.state import TrainState


class Callback:
    """Base class of the training techniques; every hook does nothing by default."""

    columns: tuple[str, ...] = ()
    """History columns this technique adds (through ``extra_terms`` as ``loss_<name>``, or ``on_record``)."""

    changes_objective: bool = True
    """Whether this technique may change the loss as a function of the parameters between two steps
    (weights, points, extra terms, a model changed without a new optimiser).  Only while every callback
    says False does a quasi-Newton step reuse the previous step's last evaluation
    (:class:`~kanpde.training.optimizers.LastEvaluation`); a new technique keeps the safe default."""

    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError (naming the setting) if this technique cannot work on ``model``."""

    def check_problem(self, problem: Problem) -> None:
        """Raise ValueError (naming the setting) if this technique cannot work on ``problem``."""

    def on_fit_start(self, state: TrainState) -> None:
        """After the model, problem and points are on the training device, before the first step."""

    def on_step_start(self, state: TrainState) -> None:
        """Before the optimiser step ``state.step``."""

    def on_squares(self, state: TrainState, squares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-point squared residuals ``{term: (n,)}`` as the objective will see them (e.g. weighted)."""
        return squares

    def on_objective(self, state: TrainState, objective: dict[str, torch.Tensor],
                     squares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each term's scalar objective, before the problem's weights combine them."""
        return objective

    def extra_terms(self, state: TrainState) -> dict[str, torch.Tensor]:
        """Scalar terms added to the loss unweighted and logged as ``loss_<name>`` (e.g. a penalty)."""
        return {}

    def on_step_end(self, state: TrainState) -> None:
        """After the optimiser step; ``state.loss`` and ``state.terms`` are the step's starting values."""

    def on_record(self, state: TrainState) -> dict[str, float]:
        """Extra history columns for this record; the history recorder asks every callback from its own
        ``on_step_end``, so a callback listed after it sees the step's row already recorded."""
        return {}

    def on_stage_end(self, state: TrainState) -> None:
        """The model is about to change (grid extension, pruning, symbolic step) or training ended."""

    def on_model_change(self, state: TrainState) -> None:
        """The model's parameters were replaced; ``state.optimizer`` is already a fresh one."""

    def on_resample(self, state: TrainState, term: str, residual: torch.Tensor, residual_max: torch.Tensor) -> None:
        """The points of ``term`` were redrawn; ``residual`` (n,) are |r| at the new points."""

    def on_fit_end(self, state: TrainState) -> None:
        """After the last step (or a stop)."""

    def checkpoint_state(self) -> dict:
        """What this callback needs in ``checkpoint.pt`` to continue exactly (tensors and plain values)."""
        return {}

    def restore_state(self, state: TrainState, saved: dict) -> None:
        """Continue from a checkpoint: ``saved`` is what :meth:`checkpoint_state` returned, and ``state``
        already holds the restored model, points, history and optimiser."""


class CallbackList:
    """Callbacks called in order; step hooks stop dispatching once a callback stopped training."""

    def __init__(self, callbacks: Iterable[Callback]) -> None:
        self.callbacks = list(callbacks)

    def __iter__(self):
        return iter(self.callbacks)

    def call(self, hook: str, state: TrainState, *args: object) -> None:
        for cb in self.callbacks:
            if state.stop and hook in ("on_step_start", "on_step_end"):
                return
            getattr(cb, hook)(state, *args)

    @property
    def static_objective(self) -> bool:
        """Whether no callback changes the objective between steps (see :attr:`Callback.changes_objective`)."""
        return not any(cb.changes_objective for cb in self.callbacks)

    def pipe(self, hook: str, state: TrainState, value: dict, *args: object) -> dict:
        """Thread ``value`` through every callback's ``hook(state, value, *args)`` (on_squares, on_objective)."""
        for cb in self.callbacks:
            value = getattr(cb, hook)(state, value, *args)
        return value


class StepFunction(Callback):
    """A plain function ``fn(step, model)`` called after every step (for quick probes and tests)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state.step, state.model)
