"""Training: Adam, L-BFGS or Adam→L-BFGS on a problem's weighted loss, with grid-extension stages."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import adaptive, checks
from .constraints import HardConstraint
from .derivatives import BACKENDS, resolve_backend
from .interpret.importance import prune
from .interpret.network import kan_of
from .interpret.symbolic import EdgeForm, auto_symbolic, check_library
from .jet import supports_jet
from .metrics import errors, errors_against, predict, relative_l2
from .models import native
from .models.kan import KANLayer
from .geometry import TimeDomain
from .problem import Points, Problem

OPTIMIZERS = ("adam", "lbfgs", "adam_lbfgs")


@dataclass
class TrainResult:
    """What a training run returns: its history, its wall time and how it ended.

    ``history`` maps column names (``step``, ``time_s``, ``loss``, ``loss_<term>``, ``rel_l2``,
    ``grid`` and ``unknown_<name>`` for each learned coefficient) to equal-length lists.  ``stages`` holds one entry per grid stage (the model just
    before each grid extension, pruning or symbolic step, and at the end): ``step, time_s, grid, n_params`` and, with an exact
    solution, ``rel_l2, mse, h1_sq``; these are the points of the KAN paper's scaling plots.
    ``status`` is ``ok`` or ``failed`` (``message`` says why).  ``pruned_width`` is the KAN's width
    after pruning (None without), ``symbolic`` the edge forms chosen by the symbolic step, ``points``
    the collocation points at the end (RAD moves the PDE points), ``attention`` the final RBA weights.
    """

    history: dict[str, list[float]]
    wall_time_s: float
    steps_done: int
    status: str = "ok"
    message: str = ""
    stages: dict[str, list[float]] = field(default_factory=dict)
    pruned_width: list[int] | None = None
    symbolic: list[EdgeForm] = field(default_factory=list)
    points: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (parameters and buffers) to restore after a failure."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite (one reduction, one device sync)."""
    params = [p.detach().flatten() for p in model.parameters()]
    return not params or bool(torch.isfinite(torch.cat(params)).all())


def settings_group(group: str, given: Mapping[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``given`` (a config mapping like ``trainer.reg``) over ``defaults``; an unknown key fails, naming the group."""
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"trainer.{group} takes {', '.join(defaults)}, got unknown key(s) {sorted(unknown)}")
    return {**defaults, **dict(given)}


class NonFiniteLoss(RuntimeError):
    """Raised inside training when the loss becomes NaN or infinite."""


@dataclass
class Trainer:
    """Minimises sum_t weight_t * MSE_t over a problem's loss terms.

    Args:
        optimizer: ``adam``, ``lbfgs`` or ``adam_lbfgs`` (Adam for ``adam_steps``, then L-BFGS).
        steps: total optimiser steps (an L-BFGS step is one iteration with a strong-Wolfe line search).
        lr: Adam learning rate (L-BFGS uses ``lbfgs_lr``).
        adam_steps: with ``adam_lbfgs``, how many of the steps are Adam.
        lbfgs_lr, history_size: L-BFGS settings.
        grid_extension: ``{"at": [steps], "grids": [sizes]}``: at step ``at[i]`` a KAN grid coarser than
            ``grids[i]`` is extended to ``grids[i]`` (least-squares refit, fresh optimiser state); a grid
            already that fine is kept, so one schedule serves a sweep over ``model.grid``. Empty lists:
            no extension. ``grids`` must increase.
        extension_state: what Adam keeps across a grid extension: ``fresh`` (new moments) or ``carry``
            (the moments mapped like the coefficients, :meth:`kanpde.models.EdgeLayer.extension_map`:
            first moments by the map, second moments by its square; the other parameters keep theirs).
            L-BFGS always starts afresh.
        grid_update: ``none`` keeps every grid range fixed (measured best on the Poisson problems);
            ``extension`` moves the hidden layers' grids to the activations' range on the
            collocation points before each grid extension (pykan's habit).
        log_every: record history every this many steps.
        progress: show a tqdm progress bar.
        device: ``auto``, ``cpu`` or ``cuda``.
        dtype: ``float32`` or ``float64``.
        derivatives: how residuals get input derivatives: ``auto`` (forward propagation when the
            model supports it, else nested autograd), ``forward`` or ``autograd``.
        compile: wrap the model's derivative pass in ``torch.compile`` (needs a C++ compiler on
            the CPU; the first steps pay the compilation).  It compiles torch operations, so a KAN's
            B-spline layers then leave the CPU kernel (:mod:`kanpde.models.native`), which is faster.
        reg: the KAN paper's sparsity penalty (:meth:`kanpde.models.KAN.regularization`) on the PDE
            points, ``{"l1": weight, "entropy": weight, "until": step or None}``; added to the loss
            (history column ``loss_reg``) before step ``until`` (None: throughout).  Off at 0, 0.
        prune_at: at this step, prune the KAN (:func:`kanpde.interpret.importance.prune`): edges whose
            mean magnitude on the PDE points is below ``prune_threshold``, and the nodes left without
            edges.  None: never.
        symbolic: ``{"at": step or None, "library": [names] or None (all), "complexity_penalty": p,
            "r2_min": r}``: at step ``at`` every numeric edge becomes its best closed form
            (:func:`kanpde.interpret.symbolic.auto_symbolic`) and training goes on with their parameters.
        schedule: Adam's learning rate over the steps, ``{"warmup": steps, "decay": none | exponential |
            cosine, "decay_steps": s, "decay_rate": r, "min_factor": f}`` (:func:`kanpde.adaptive.lr_factor`;
            cosine runs to the end of the Adam steps).
        loss: ``{"rba": bool, "gamma": g, "eta": e, "rba_boundary": bool, "causal": {"eps": e, "slabs": n}}``.
            ``rba``: residual-based attention, per-point weights lam on the PDE residual (and the
            condition residuals with ``rba_boundary``), loss mean((lam·r)²), lam starting at 1 and
            updated after every step as lam <- g·lam + e·|r|/max|r| (:func:`kanpde.adaptive.rba_update`).
            ``causal.eps > 0``: the PDE term of a time-dependent problem becomes the mean over ``slabs``
            time slabs of w_i·L_i with w_i = exp(-eps·sum of earlier slabs' L) (history column
            ``causal_min_weight``).  Logged ``loss_<term>`` stay the plain mean squares.
        sampler: ``{"adaptive": none | rad, "period": p, "k": k, "c": c, "pool": m}``: with ``rad``, every
            ``p`` steps the PDE points are redrawn from ``m`` uniform candidates with density
            proportional to |r|^k / mean |r|^k + c (:func:`kanpde.adaptive.rad_resample`).  RBA weights
            of the new points start at the steady state of their residuals, e·|r|/((1 - g)·max|r|).
    """

    optimizer: str = "lbfgs"
    steps: int = 1000
    lr: float = 1e-3
    adam_steps: int = 0
    lbfgs_lr: float = 1.0
    history_size: int = 50
    grid_extension: Mapping[str, Sequence[int]] = field(default_factory=lambda: {"at": [], "grids": []})
    grid_update: str = "none"
    log_every: int = 10
    progress: bool = True
    device: str = "auto"
    dtype: str = "float64"
    derivatives: str = "auto"
    compile: bool = False
    reg: Mapping[str, Any] = field(default_factory=lambda: {"l1": 0.0, "entropy": 0.0, "until": None})
    prune_at: int | None = None
    prune_threshold: float = 1e-2
    symbolic: Mapping[str, Any] = field(default_factory=lambda: {"at": None, "library": None, "complexity_penalty": 1.0, "r2_min": 0.0})
    extension_state: str = "fresh"
    schedule: Mapping[str, Any] = field(default_factory=dict)
    loss: Mapping[str, Any] = field(default_factory=dict)
    sampler: Mapping[str, Any] = field(default_factory=dict)
    callbacks: list[Callable[[int, nn.Module], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = checks.one_of("trainer.optimizer", self.optimizer, OPTIMIZERS)
        self.steps = checks.positive_int("trainer.steps", self.steps)
        self.lr = checks.positive_float("trainer.lr", self.lr)
        self.lbfgs_lr = checks.positive_float("trainer.lbfgs_lr", self.lbfgs_lr)
        self.history_size = checks.positive_int("trainer.history_size", self.history_size)
        self.log_every = checks.positive_int("trainer.log_every", self.log_every)
        self.adam_steps = checks.positive_int("trainer.adam_steps", self.adam_steps, minimum=0)
        if self.optimizer == "adam_lbfgs" and not 0 < self.adam_steps < self.steps:
            raise ValueError(f"trainer.adam_steps must lie strictly between 0 and trainer.steps={self.steps} for adam_lbfgs, got {self.adam_steps}")
        self.grid_update = checks.one_of("trainer.grid_update", self.grid_update, ("none", "extension"))
        self.device = checks.one_of("trainer.device", self.device, ("auto", "cpu", "cuda"))
        self.dtype = checks.one_of("trainer.dtype", self.dtype, ("float32", "float64"))
        self.derivatives = checks.one_of("trainer.derivatives", self.derivatives, BACKENDS)
        if not isinstance(self.compile, bool):
            raise ValueError(f"trainer.compile must be true or false, got {self.compile!r}")
        ext = settings_group("grid_extension", self.grid_extension, {"at": [], "grids": []})
        at = [checks.positive_int(f"trainer.grid_extension.at[{i}]", s) for i, s in enumerate(ext["at"])]
        grids = [checks.positive_int(f"trainer.grid_extension.grids[{i}]", g) for i, g in enumerate(ext["grids"])]
        if len(at) != len(grids):
            raise ValueError(f"trainer.grid_extension: 'at' has {len(at)} steps but 'grids' has {len(grids)} sizes")
        if at != sorted(set(at)) or (at and at[-1] >= self.steps):
            raise ValueError(f"trainer.grid_extension.at must be increasing steps below trainer.steps={self.steps}, got {at}")
        if grids != sorted(set(grids)):
            raise ValueError(f"trainer.grid_extension.grids must increase, got {grids}")
        self.grid_extension = {"at": at, "grids": grids}
        self._check_interpretation()
        self._check_adaptive()
        self.extension_state = checks.one_of("trainer.extension_state", self.extension_state, ("fresh", "carry"))
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("trainer.device=cuda but torch sees no CUDA device; use trainer.device=cpu or auto")

    def _check_interpretation(self) -> None:
        """Validate ``reg``, ``prune_at``/``prune_threshold`` and ``symbolic``."""
        def step_or_none(name: str, value: Any) -> int | None:
            if value is None:
                return None
            step = checks.positive_int(name, value, minimum=0)
            if step >= self.steps:
                raise ValueError(f"{name}={step} must be below trainer.steps={self.steps}")
            return step

        reg = settings_group("reg", self.reg, {"l1": 0.0, "entropy": 0.0, "until": None})
        reg["l1"] = checks.positive_float("trainer.reg.l1", reg["l1"], allow_zero=True)
        reg["entropy"] = checks.positive_float("trainer.reg.entropy", reg["entropy"], allow_zero=True)
        reg["until"] = None if reg["until"] is None else checks.positive_int("trainer.reg.until", reg["until"], minimum=0)
        self.reg = reg
        self.prune_at = step_or_none("trainer.prune_at", self.prune_at)
        self.prune_threshold = checks.positive_float("trainer.prune_threshold", self.prune_threshold, allow_zero=True)
        sym = settings_group("symbolic", self.symbolic, {"at": None, "library": None, "complexity_penalty": 1.0, "r2_min": 0.0})
        sym["at"] = step_or_none("trainer.symbolic.at", sym["at"])
        try:
            sym["library"] = None if sym["library"] is None else check_library(list(sym["library"]))
        except ValueError as e:
            raise ValueError(f"trainer.symbolic.library: {e}") from None
        sym["complexity_penalty"] = checks.positive_float("trainer.symbolic.complexity_penalty", sym["complexity_penalty"], allow_zero=True)
        if not isinstance(sym["r2_min"], (int, float)) or not sym["r2_min"] <= 1:
            raise ValueError(f"trainer.symbolic.r2_min must be a number <= 1, got {sym['r2_min']!r}")
        self.symbolic = sym

    def _check_adaptive(self) -> None:
        """Validate ``schedule``, ``loss`` and ``sampler``, filling in defaults."""
        def field_error(group: str, e: ValueError) -> ValueError:
            return ValueError(f"trainer.{group}.{e}")

        sch = settings_group("schedule", self.schedule, {"warmup": 0, "decay": "none", "decay_steps": 1000, "decay_rate": 0.9, "min_factor": 0.0})
        adam_end = self.adam_steps if self.optimizer == "adam_lbfgs" else self.steps
        try:
            adaptive.lr_factor(0, sch["warmup"], sch["decay"], sch["decay_steps"], sch["decay_rate"],
                               adam_end if sch["decay"] == "cosine" else None, sch["min_factor"])
        except ValueError as e:
            raise field_error("schedule", e) from None
        self.schedule = {**sch, "total": adam_end if sch["decay"] == "cosine" else None}

        loss = settings_group("loss", self.loss, {"rba": False, "gamma": 0.999, "eta": 0.01, "rba_boundary": False, "causal": {}})
        for key in ("rba", "rba_boundary"):
            if not isinstance(loss[key], bool):
                raise ValueError(f"trainer.loss.{key} must be true or false, got {loss[key]!r}")
        try:
            checks.number_in("gamma", loss["gamma"], 0.0, 1.0, high_open=True)
            checks.number_in("eta", loss["eta"], 0.0, low_open=True)
        except ValueError as e:
            raise field_error("loss", e) from None
        causal = settings_group("loss.causal", loss["causal"], {"eps": 0.0, "slabs": 16})
        try:
            checks.number_in("eps", causal["eps"], 0.0)
            checks.positive_int("slabs", causal["slabs"])
        except ValueError as e:
            raise field_error("loss.causal", e) from None
        self.loss = {**loss, "causal": causal}

        smp = settings_group("sampler", self.sampler, {"adaptive": "none", "period": 500, "k": 1.0, "c": 1.0, "pool": 20000})
        try:
            checks.one_of("adaptive", smp["adaptive"], ("none", "rad"))
            checks.positive_int("period", smp["period"])
            checks.number_in("k", smp["k"], 0.0)
            checks.number_in("c", smp["c"], 0.0)
            checks.positive_int("pool", smp["pool"])
        except ValueError as e:
            raise field_error("sampler", e) from None
        self.sampler = smp

    def check_problem(self, problem: Problem) -> None:
        """Fail before training if a technique does not apply to ``problem``."""
        if self.loss["causal"]["eps"] > 0 and not isinstance(problem.domain, TimeDomain):
            raise ValueError(f"trainer.loss.causal.eps={self.loss['causal']['eps']} weights time slabs, and {problem.name} has no time input; set it to 0")
        # every problem has PDE points (Problem refuses n_interior < 1), so RAD always has a term to redraw
        if self.sampler["adaptive"] == "rad" and self.sampler["pool"] < problem.n_interior:
            raise ValueError(f"trainer.sampler.pool={self.sampler['pool']} must be at least problem.n_interior={problem.n_interior} (points are drawn without replacement)")

    @property
    def regularizes(self) -> bool:
        """Whether the sparsity penalty is on."""
        return self.reg["l1"] > 0 or self.reg["entropy"] > 0

    @property
    def torch_device(self) -> torch.device:
        """The device training runs on."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def check_model(self, model: nn.Module) -> None:
        """Fail before training if the schedule asks the model for something it cannot do."""
        grids = self.grid_extension["grids"]
        if grids and not hasattr(model, "extend_grid"):
            raise ValueError(f"trainer.grid_extension needs a KAN model, got {type(model).__name__}; set trainer.grid_extension.at=[] trainer.grid_extension.grids=[]")
        try:
            resolve_backend(model, self.derivatives)
        except ValueError as e:
            raise ValueError(f"trainer.{e}") from None
        wants = [name for name, on in (("trainer.reg", self.regularizes), ("trainer.prune_at", self.prune_at is not None),
                                       ("trainer.symbolic.at", self.symbolic["at"] is not None)) if on]
        if wants:
            try:
                kan_of(model)
            except TypeError:
                inner = model.net if isinstance(model, HardConstraint) else model
                raise ValueError(f"{wants[0]} needs a KAN model, got {type(inner).__name__}") from None
        if self.compile and not supports_jet(model):
            raise ValueError(f"trainer.compile compiles the forward derivative pass, which {type(model).__name__} lacks; set trainer.compile=false")

    def derivative_backend(self, model: nn.Module) -> str:
        """The back end residual derivatives use on ``model``: ``forward`` or ``autograd``."""
        return resolve_backend(model, self.derivatives)

    def uses_kernel(self, model: nn.Module) -> bool:
        """Whether ``model``'s B-spline KAN layers run their derivative pass in the compiled CPU kernel
        (:mod:`kanpde.models.native`): forward derivatives, on the CPU, not compiled, and the kernel builds."""
        return (self.derivative_backend(model) == "forward" and not self.compile and self.torch_device.type == "cpu"
                and any(isinstance(m, KANLayer) for m in model.modules()) and native.library(self.torch_dtype) is not None)

    def extensions_for(self, model: nn.Module) -> dict[int, int]:
        """The extensions this schedule makes on ``model``: ``{step: new grid}`` (those above its grid)."""
        grid = getattr(model, "grid", None)
        return {s: g for s, g in zip(self.grid_extension["at"], self.grid_extension["grids"]) if grid is not None and g > grid}

    def schedule_notes(self, model: nn.Module) -> list[str]:
        """What a user should know about this schedule on ``model``: scheduled grids it already has, and
        extensions that do not keep the function exactly (B-splines: only a multiple of the grid does;
        Chebyshev edges: every extension does; RBF edges: none does)."""
        schedule = self.extensions_for(model)
        notes = []
        kept = [g for g in self.grid_extension["grids"] if g not in schedule.values()]
        if kept and hasattr(model, "grid"):
            notes.append(f"model.grid={model.grid} is already as fine as scheduled grid(s) {kept}; extensions: "
                         + (", ".join(f"G={g} at step {s}" for s, g in schedule.items()) or "none"))
        previous = getattr(model, "grid", 0)
        exact = getattr(model, "extension_is_exact", lambda old, new: new % old == 0)
        basis = getattr(model, "basis", "bspline")
        for step, g in schedule.items():
            if exact(previous, g):
                pass
            elif basis == "bspline":
                notes.append(f"the grid extension {previous} -> {g} at step {step} is not a refinement ({g} is not a "
                             f"multiple of {previous}): the refit only approximates the splines, and the PDE residual "
                             f"can jump (on poisson2d, 5 -> 8 raised it 67x); multiples of the grid keep the function exactly")
            else:  # rbf: no extension keeps Gaussians of one width exactly with those of another
                notes.append(f"the grid extension {previous} -> {g} at step {step} refits the {basis} edges by least squares: "
                             f"it only approximates the function (rbf: by up to several % of its size near the ends of a "
                             f"range), and the PDE residual can jump")
            previous = g
        return notes

    def _adam_moments(self, opt: torch.optim.Optimizer, model: nn.Module, grid: int) -> tuple[dict, list] | None:
        """With ``extension_state=carry`` and Adam: every parameter's state and each layer's extension map."""
        if self.extension_state != "carry" or not isinstance(opt, torch.optim.Adam):
            return None
        layers = kan_of(model).layers
        return dict(opt.state), [(layer.coef, layer.extension_map(grid)) for layer in layers]

    @staticmethod
    def _restore_moments(opt: torch.optim.Optimizer, model: nn.Module, states: dict, maps: list) -> None:
        """Give the new Adam the old moments: unchanged parameters their own, new coefficients the mapped ones."""
        for group in opt.param_groups:
            for p in group["params"]:
                if p in states:
                    opt.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in states[p].items()}
        for layer, (old_coef, P) in zip(kan_of(model).layers, maps):
            if old_coef in states:
                opt.state[layer.coef] = adaptive.project_adam_state(states[old_coef], P, dim=1)

    def _slabs(self, problem: Problem, pts: Points) -> torch.Tensor:
        """The causal time slab of every PDE point (time is the last input)."""
        dom = problem.domain
        return adaptive.slab_index(pts["pde"]["x"][:, -1], dom.t0, dom.t1, self.loss["causal"]["slabs"])

    def _rad_draw(self, problem: Problem, model: nn.Module, pts: Points, step: int,
                  chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RAD: a uniform candidate pool, its PDE residuals |r| and the indices of the points drawn from it."""
        x = pts["pde"]["x"]
        pool = problem.domain.sample_interior(self.sampler["pool"], "uniform", 7919 * step).to(device=x.device, dtype=x.dtype)
        with torch.enable_grad():  # nested autograd needs a graph; the forward back end does not mind
            residual = torch.cat([problem.pde_pointwise(model, xc, self.derivatives).detach() for xc in torch.split(pool, chunk)]).sqrt()
        generator = torch.Generator(device=x.device).manual_seed(step)
        _, chosen = adaptive.rad_resample(pool, residual, x.shape[0], self.sampler["k"], self.sampler["c"], generator)
        return pool, residual, chosen

    def make_optimizer(self, model: nn.Module, step: int) -> torch.optim.Optimizer:
        """The optimiser for ``model``'s parameters at ``step`` (Adam or L-BFGS by the schedule)."""
        use_adam = self.optimizer == "adam" or (self.optimizer == "adam_lbfgs" and step < self.adam_steps)
        if use_adam:
            return torch.optim.Adam(model.parameters(), lr=self.lr)
        return torch.optim.LBFGS(
            # one iteration per step; max_eval must be set, or torch leaves the line search no evaluations
            model.parameters(), lr=self.lbfgs_lr, max_iter=1, max_eval=25, history_size=self.history_size,
            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe",
        )

    def fit(self, problem: Problem, model: nn.Module, points: Points, x_eval: torch.Tensor | None = None,
            u_ref: torch.Tensor | None = None) -> TrainResult:
        """Train ``model`` (in place) on ``points``; errors on ``x_eval`` are logged.

        Errors are taken against ``u_ref`` (m, n_out) when given (reference data), else against
        ``problem.exact``.  The problem's unknown coefficients train with the model.  A non-finite
        loss stops training: the model is restored to the last finite state and the result has
        ``status="failed"`` with a message naming the step.
        """
        self.check_model(model)
        self.check_problem(problem)
        dev, dt = self.torch_device, self.torch_dtype
        model.to(device=dev, dtype=dt)
        problem.unknowns.to(device=dev, dtype=dt)
        trainable = nn.ModuleDict({"model": model, "unknowns": problem.unknowns})  # what the optimiser moves
        pts = {t: {k: v.to(device=dev, dtype=dt) for k, v in p.items()} for t, p in points.items()}
        u_exact = None
        if x_eval is not None:
            x_eval = x_eval.to(device=dev, dtype=dt)
            u_exact = problem.exact(x_eval) if u_ref is None else u_ref.to(device=dev, dtype=dt)
        weights = problem.weights
        unknown_cols = [f"unknown_{n}" for n in problem.unknowns]
        reg_cols = ["loss_reg"] if self.regularizes else []
        hist: dict[str, list[float]] = {k: [] for k in ["step", "time_s", "loss", *[f"loss_{t}" for t in problem.terms], *reg_cols,
                                                        "rel_l2", "grid", *unknown_cols]}
        extensions = self.extensions_for(model)
        pruned_width: list[int] | None = None
        forms: list[EdgeForm] = []

        if self.compile:
            eager = type(model).forward_jet.__get__(model)
            compiled = torch.compile(eager)
            # partials above second order need the jet's graph to x: that variant stays eager (compiling
            # it crashed torch 2.13's CPU backend with heap corruption)
            model.forward_jet = lambda x, pairs=(): (eager if x.requires_grad else compiled)(x, pairs)  # type: ignore[method-assign]

        rba, causal = self.loss["rba"], self.loss["causal"]
        attention = {t: torch.ones(len(next(iter(p.values()))), device=dev, dtype=dt) for t, p in pts.items()
                     if rba and (t == "pde" or self.loss["rba_boundary"])}  # RBA weights per point
        slabs = self._slabs(problem, pts) if causal["eps"] > 0 else None
        step_state: dict[str, Any] = {}  # the current step's first residuals (RBA) and causal weights (history)
        if slabs is not None:
            hist["causal_min_weight"] = []

        def closure_terms(step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            squares = problem.pointwise(model, pts, self.derivatives)
            terms = {t: v.mean() for t, v in squares.items()}
            if "squares" not in step_state:
                step_state["squares"] = {t: v.detach() for t, v in squares.items()}
            objective = dict(terms)
            for t, v in squares.items():
                if t in attention:
                    v = attention[t].square() * v
                if t == "pde" and slabs is not None:
                    objective[t], step_state["causal"] = adaptive.causal_loss(v, slabs, causal["slabs"], causal["eps"])
                elif t in attention:
                    objective[t] = v.mean()
            loss = sum(weights[t] * v for t, v in objective.items())
            if self.regularizes:
                on = self.reg["until"] is None or step < self.reg["until"]
                terms["reg"] = kan_of(model).regularization(pts["pde"]["x"], self.reg["l1"], self.reg["entropy"]) if on else loss.new_zeros(())
                loss = loss + terms["reg"]
            return loss, terms

        def record(step: int, loss: float, terms: dict[str, torch.Tensor]) -> float:
            err = math.nan
            if u_exact is not None:
                err = relative_l2(predict(model, x_eval), u_exact).item()
            hist["step"].append(step)
            hist["time_s"].append(time.perf_counter() - t0)
            hist["loss"].append(loss)
            for t in problem.terms + (["reg"] if self.regularizes else []):
                hist[f"loss_{t}"].append(terms[t].item())
            hist["rel_l2"].append(err)
            hist["grid"].append(float(getattr(model, "grid", 0)))
            for name, value in problem.unknowns.items():
                hist[f"unknown_{name}"].append(float(value.detach()))
            if slabs is not None:
                hist["causal_min_weight"].append(float(step_state["causal"].min()))
            return err

        stages: dict[str, list[float]] = {k: [] for k in ("step", "time_s", "grid", "n_params", "rel_l2", "mse", "h1_sq")}

        def close_stage(steps_done: int) -> None:
            errs = {} if u_exact is None else errors(model, problem.exact, x_eval) if u_ref is None else errors_against(model, x_eval, u_exact)
            row = {"step": steps_done, "time_s": time.perf_counter() - t0, "grid": float(getattr(model, "grid", 0)),
                   "n_params": float(model.n_params() if hasattr(model, "n_params") else
                                             sum(p.numel() for p in model.parameters() if p.requires_grad))}
            for key, values in stages.items():
                values.append(row.get(key, errs.get(key, math.nan)))

        t0 = time.perf_counter()
        opt = self.make_optimizer(trainable, 0)
        last_good = snapshot(trainable)
        bar = tqdm(range(self.steps), disable=not self.progress, dynamic_ncols=True, leave=False, mininterval=0.5)
        status, message, step = "ok", "", 0
        for step in bar:
            if step in extensions:
                close_stage(step)
                if self.grid_update == "extension":
                    model.update_grid(pts["pde"]["x"])
                carried = self._adam_moments(opt, model, extensions[step])
                model.extend_grid(extensions[step])
                last_good = snapshot(trainable)  # same function, new shapes
                opt = self.make_optimizer(trainable, step)
                if carried is not None and isinstance(opt, torch.optim.Adam):
                    self._restore_moments(opt, model, *carried)
            elif self.optimizer == "adam_lbfgs" and step == self.adam_steps:
                opt = self.make_optimizer(trainable, step)
            if step == self.prune_at or step == self.symbolic["at"]:
                close_stage(step)
                if step == self.prune_at:
                    try:
                        pruned_width = list(prune(model, pts["pde"]["x"], self.prune_threshold, inplace=True).width)
                    except ValueError as e:  # nothing changed: the model stays as trained so far
                        status, message = "failed", f"trainer.prune_at={step}: {e} (trainer.prune_threshold)"
                        break
                if step == self.symbolic["at"]:
                    forms = auto_symbolic(model, pts["pde"]["x"], self.symbolic["library"], self.symbolic["complexity_penalty"],
                                          self.symbolic["r2_min"])
                last_good = snapshot(trainable)  # new shapes and parameters
                opt = self.make_optimizer(trainable, step)

            if self.sampler["adaptive"] == "rad" and step > 0 and step % self.sampler["period"] == 0:
                pool, residual, chosen = self._rad_draw(problem, model, pts, step)
                pts["pde"] = {"x": pool[chosen]}
                if "pde" in attention:  # the new points' weights start where the update would settle on them
                    attention["pde"] = self.loss["eta"] / (1 - self.loss["gamma"]) * residual[chosen] / residual.max().clamp_min(torch.finfo(dt).tiny)
                if slabs is not None:
                    slabs = self._slabs(problem, pts)
                if isinstance(opt, torch.optim.LBFGS):  # its curvature pairs belong to the old points
                    opt = self.make_optimizer(trainable, step)
            if isinstance(opt, torch.optim.Adam):
                factor = adaptive.lr_factor(step, self.schedule["warmup"], self.schedule["decay"], self.schedule["decay_steps"],
                                            self.schedule["decay_rate"], self.schedule["total"], self.schedule["min_factor"])
                for group in opt.param_groups:
                    group["lr"] = self.lr * factor
            step_state.clear()
            terms: dict[str, torch.Tensor] = {}
            if isinstance(opt, torch.optim.LBFGS):
                def closure() -> torch.Tensor:
                    opt.zero_grad(set_to_none=True)
                    loss, parts = closure_terms(step)
                    if not terms:  # keep the first call's terms: the loss at the start of this step
                        terms.update({t: v.detach() for t, v in parts.items()})
                    loss.backward()
                    return loss
                loss_val = float(opt.step(closure).detach())
                if float(opt.state[opt.param_groups[0]["params"][0]].get("t", 1.0)) == 0.0:
                    opt.state.clear()  # the line search found no decrease: restart from steepest descent
            else:
                opt.zero_grad(set_to_none=True)
                loss, parts = closure_terms(step)
                terms.update({t: v.detach() for t, v in parts.items()})
                loss_val = loss.item()
                if math.isfinite(loss_val):
                    loss.backward()
                    opt.step()
            if not math.isfinite(loss_val) or not all_finite(trainable):
                bad = [t for t, v in terms.items() if not math.isfinite(v.item())]
                what = f"loss term(s) {', '.join(bad)}" if bad else "loss" if not math.isfinite(loss_val) else "parameters"
                status = "failed"
                message = f"non-finite {what} at step {step}; the model was restored to its last finite state"
                trainable.load_state_dict(last_good)
                break
            last_good = snapshot(trainable)
            for t in attention:
                attention[t] = adaptive.rba_update(attention[t], step_state["squares"][t].sqrt(), self.loss["gamma"], self.loss["eta"])
            if step % self.log_every == 0 or step == self.steps - 1:
                err = record(step, loss_val, terms)
                bar.set_postfix(loss=f"{loss_val:.3e}", rel_l2=f"{err:.2e}", refresh=False)
            for cb in self.callbacks:
                cb(step, model)
        bar.close()
        steps_done = step + 1 if status == "ok" else step
        wall = time.perf_counter() - t0
        close_stage(steps_done)
        return TrainResult(hist, wall, steps_done, status, message, stages, pruned_width, forms, pts, attention)
