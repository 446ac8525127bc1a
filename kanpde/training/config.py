"""The trainer's settings: one typed schema, the single source of their defaults.

:class:`TrainerConfig` is what ``Trainer(**settings)`` builds and what the Hydra CLI composes
(:mod:`kanpde.experiment.schema` registers it with Hydra's ConfigStore), so a Python user and a
CLI user get the same defaults.  Every value is checked here, before any training starts; an
error names the field (``trainer.<group>.<key>``).  Each technique reads its own group.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

import torch

from kanpde import checks
from kanpde.pde.derivatives import BACKENDS

SECOND_ORDER = ("lbfgs", "bfgs", "ssbfgs", "ssbroyden")
RBA_POTENTIALS = ("linear", "exponential")  # RBA's |r|/max|r|, vRBA's exponential weights
OPTIMIZERS = ("adam", *SECOND_ORDER, *(f"adam_{m}" for m in SECOND_ORDER))


@dataclass
class GridExtensionConfig:
    """KAN grid extension: at step ``at[i]`` a grid coarser than ``grids[i]`` becomes ``grids[i]``;
    steps at or past ``trainer.steps`` are skipped (with a note).  ``method``: ``refit`` (a uniform grid,
    least squares: exact inside the ranges for a multiple of the grid) or ``insert`` (free knots inserted:
    exact on the whole line, so the loss does not move).  ``keep_curvature``: a dense quasi-Newton optimiser
    keeps its inverse Hessian through the extension, mapped like the coefficients, instead of starting afresh."""
    at: List[int] = field(default_factory=list)
    grids: List[int] = field(default_factory=list)
    method: str = "refit"
    keep_curvature: bool = False


@dataclass
class KnotsConfig:
    """Adaptive knots (:mod:`kanpde.training.callbacks.knots`): every ``every`` steps, ``method`` (none | insert |
    move | density | descend) by ``indicator`` (residual | input | curvature).  ``insert``: knots added (or, for move,
    moved) per input each time, up to ``budget`` parameters (0: no limit); no change at or after step ``until``
    (None: to the end); ``follow``: hidden layers' knots first grow to cover their inputs, widened by
    ``margin`` (this adds knots, so it is off by default); ``floor``: the uniform share of a density; ``relax``:
    the fraction of the way to a density's knots that each change moves them (1: all the way); ``removal``:
    which knots ``move`` takes out, those between the cells of smallest indicator (``indicator``) or, of the
    older knots, those whose removal changes the edges least (``jump``); ``descent_steps``: for ``descend``,
    the gradient steps in the knot positions (coefficients fixed) at each change;
    ``keep_curvature``: a dense quasi-Newton optimiser keeps its inverse Hessian through each change, mapped
    like the coefficients (H -> M H M^T), instead of starting afresh."""
    method: str = "none"
    indicator: str = "residual"
    every: int = 500
    until: Optional[int] = None
    insert: int = 2
    budget: int = 0
    follow: bool = False
    margin: float = 0.05
    floor: float = 0.2
    relax: float = 1.0
    removal: str = "indicator"
    descent_steps: int = 5
    keep_curvature: bool = False


@dataclass
class RegConfig:
    """The KAN paper's sparsity penalty on the PDE points before step ``until`` (None: throughout); 0, 0: off."""
    l1: float = 0.0
    entropy: float = 0.0
    until: Optional[int] = None


@dataclass
class SymbolicConfig:
    """At step ``at`` every numeric KAN edge becomes its best closed form from ``library`` (None: all)."""
    at: Optional[int] = None
    library: Optional[List[str]] = None
    complexity_penalty: float = 1.0
    r2_min: float = 0.0


@dataclass
class ScheduleConfig:
    """Adam's learning rate ``lr * factor(step)``: linear warm-up, then none | exponential | cosine decay."""
    warmup: int = 0
    decay: str = "none"
    decay_steps: int = 1000
    decay_rate: float = 0.9
    min_factor: float = 0.0


@dataclass
class CausalConfig:
    """Causal weights over ``slabs`` time slabs, w_i = exp(-eps * earlier slabs' loss); eps = 0: off."""
    eps: float = 0.0
    slabs: int = 16


@dataclass
class LossConfig:
    """Residual-based attention (``rba``: lam <- gamma*lam + eta*q(r); ``rba_potential``: linear, q = |r|/max|r|,
    or exponential, vRBA's q = (step+2)^((|r|/max|r| - 1)/rba_c)), causal weights, and term
    weights from the gradients every ``balance_period`` steps (``balance``: none | grad_norm | ntk,
    smoothed with ``momentum``; ``ntk`` takes ``ntk_points`` points of each term)."""
    rba: bool = False
    gamma: float = 0.999
    eta: float = 0.01
    rba_potential: str = "linear"
    rba_c: float = 1.0
    rba_boundary: bool = False
    causal: CausalConfig = field(default_factory=CausalConfig)
    balance: str = "none"
    balance_period: int = 100
    momentum: float = 0.9
    ntk_points: int = 32


@dataclass
class SamplerConfig:
    """RAD: every ``period`` steps redraw the PDE points from ``pool`` candidates, density ~ |r|^k/mean|r|^k + c.
    ``keep_curvature``: a dense quasi-Newton optimiser keeps its inverse Hessian across the redraw (the same
    operator on new points) instead of starting afresh."""
    adaptive: str = "none"
    period: int = 500
    k: float = 1.0
    c: float = 1.0
    pool: int = 20000
    keep_curvature: bool = False


@dataclass
class CheckpointConfig:
    """``checkpoint.pt`` in the run directory every ``every`` steps (0: only after the last step and on an interrupt)."""
    every: int = 200


@dataclass
class MarchingConfig:
    """Time-marching: ``windows`` equal time windows, or the windows between the interior ``breaks``,
    trained one after another for ``trainer.steps`` steps each (:mod:`kanpde.training.marching`); 1 and []: off.
    ``transfer``: a window's network starts from the previous one's weights (else from a fresh initialisation)."""
    windows: int = 1
    breaks: List[float] = field(default_factory=list)
    transfer: bool = True


GROUPS = {"grid_extension": GridExtensionConfig, "reg": RegConfig, "symbolic": SymbolicConfig, "schedule": ScheduleConfig,
          "loss": LossConfig, "sampler": SamplerConfig,
          "checkpoint": CheckpointConfig, "marching": MarchingConfig, "knots": KnotsConfig}


def check_device(device: Any) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` for a GPU torch sees; a ValueError naming ``trainer.device`` otherwise."""
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"trainer.device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"trainer.device={text} but torch sees no CUDA device; use trainer.device=cpu or auto")
        if index and int(index) >= count:
            raise ValueError(f"trainer.device={text} but torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return text


def _group(name: str, cls: type, value: Any) -> Any:
    """``value`` (a dataclass or a mapping such as a config node) as ``cls``; an unknown key fails, naming the group."""
    if isinstance(value, cls):
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"trainer.{name} must be a mapping of {', '.join(f.name for f in dataclasses.fields(cls))}, got {value!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = set(value) - set(known)
    if unknown:
        raise ValueError(f"trainer.{name} takes {', '.join(known)}, got unknown key(s) {sorted(unknown)}")
    kwargs = dict(value)
    if cls is LossConfig and "causal" in kwargs:
        kwargs["causal"] = _group("loss.causal", CausalConfig, kwargs["causal"])
    return cls(**kwargs)


def _step_or_none(name: str, value: Any, steps: int) -> int | None:
    if value is None:
        return None
    step = checks.positive_int(name, value, minimum=0)
    if step >= steps:
        raise ValueError(f"{name}={step} must be below trainer.steps={steps}")
    return step


def _in_group(group: str, check: Any) -> None:
    """Run ``check()``; a ValueError naming a bare key is re-raised naming ``trainer.<group>.<key>``."""
    try:
        check()
    except ValueError as e:
        raise ValueError(f"trainer.{group}.{e}") from None


@dataclass
class TrainerConfig:
    """Every training setting (see the README's "Choosing the model, grid and optimiser" for advice).

    Args:
        optimizer: ``adam``; a second-order method: ``lbfgs``, or the dense quasi-Newton ``bfgs``,
            ``ssbfgs``, ``ssbroyden`` (self-scaled, for networks up to 20k parameters, best in float64;
            :mod:`kanpde.training.quasi_newton`); or ``adam_<method>`` (Adam for ``adam_steps``, then it).
            The default, ``ssbroyden``, measured best across the catalogue for KANs and MLPs alike
            (docs/catalogue.md); larger networks need ``lbfgs``, which a run says before it starts.
        steps: total optimiser steps (a second-order step is one iteration with a strong-Wolfe line search).
        lr: Adam's learning rate; ``lbfgs_lr``, ``history_size``: L-BFGS settings.
        adam_steps: with ``adam_<method>``, how many of the steps are Adam.
        grid_extension: KAN grid extension schedule (:class:`GridExtensionConfig`).
        extension_state: what Adam keeps across a grid extension: ``fresh`` or ``carry`` (moments
            mapped like the coefficients). L-BFGS always starts afresh.
        grid_update: ``none`` (fixed grid ranges), ``extension`` (hidden grids move to the
            activations' range before each extension by a least-squares refit, pykan's habit) or
            ``follow`` (hidden layers' knots grow to cover their activations before each extension,
            exactly; implies free knots).
        knots: adaptive knots (:class:`KnotsConfig`).
        log_every: record the history every this many steps.
        progress: show a progress bar (it switches itself off when stderr is not a terminal).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; dtype: ``float32`` or ``float64``.
        derivatives: ``auto`` (forward propagation where the model has it), ``forward`` or ``autograd``.
        compile: ``torch.compile`` the forward derivative pass (the model itself is left alone).
        reg, prune_at, prune_threshold, symbolic: sparsity, pruning and symbolic steps (KAN only).
        schedule, loss, sampler: Adam's learning-rate schedule, RBA and causal weights, RAD sampling.
        tensorboard: write the history's scalars for TensorBoard (``pip install kanpde[tensorboard]``).
        checkpoint: how often a run with a directory writes ``checkpoint.pt`` (:class:`CheckpointConfig`).
        marching: time windows trained one after another (:class:`MarchingConfig`); ``steps`` is then per window.
        resume: ``auto`` (continue from the run directory's checkpoint when there is one), ``never``, or
            the path of a checkpoint to continue from.
        divergence: a loss above ``divergence`` times the best loss so far ends training with
            ``status="diverged"`` and the best state restored (0: never).
    """

    optimizer: str = "ssbroyden"
    steps: int = 2000
    lr: float = 1e-3
    adam_steps: int = 0
    lbfgs_lr: float = 1.0
    history_size: int = 50
    grid_extension: GridExtensionConfig = field(default_factory=GridExtensionConfig)
    extension_state: str = "fresh"
    grid_update: str = "none"
    log_every: int = 10
    progress: bool = True
    device: str = "auto"
    dtype: str = "float64"
    derivatives: str = "auto"
    compile: bool = False
    reg: RegConfig = field(default_factory=RegConfig)
    prune_at: Optional[int] = None
    prune_threshold: float = 1e-2
    symbolic: SymbolicConfig = field(default_factory=SymbolicConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    tensorboard: bool = False
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    marching: MarchingConfig = field(default_factory=MarchingConfig)
    knots: KnotsConfig = field(default_factory=KnotsConfig)
    resume: str = "auto"
    divergence: float = 1e8

    def __post_init__(self) -> None:
        for name, cls in GROUPS.items():
            setattr(self, name, _group(name, cls, getattr(self, name)))
        self.optimizer = checks.one_of("trainer.optimizer", self.optimizer, OPTIMIZERS)
        self.steps = checks.positive_int("trainer.steps", self.steps)
        self.lr = checks.positive_float("trainer.lr", self.lr)
        self.lbfgs_lr = checks.positive_float("trainer.lbfgs_lr", self.lbfgs_lr)
        self.history_size = checks.positive_int("trainer.history_size", self.history_size)
        self.log_every = checks.positive_int("trainer.log_every", self.log_every)
        self.adam_steps = checks.positive_int("trainer.adam_steps", self.adam_steps, minimum=0)
        if self.optimizer.startswith("adam_") and not 0 < self.adam_steps < self.steps:
            raise ValueError(f"trainer.adam_steps must lie strictly between 0 and trainer.steps={self.steps} for {self.optimizer}, "
                             f"got {self.adam_steps}")
        self.grid_update = checks.one_of("trainer.grid_update", self.grid_update, ("none", "extension", "follow"))
        self.extension_state = checks.one_of("trainer.extension_state", self.extension_state, ("fresh", "carry"))
        self.device = check_device(self.device)
        self.dtype = checks.one_of("trainer.dtype", self.dtype, ("float32", "float64"))
        self.derivatives = checks.one_of("trainer.derivatives", self.derivatives, BACKENDS)
        for name in ("compile", "progress", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"trainer.{name} must be true or false, got {getattr(self, name)!r}")
        self.checkpoint.every = checks.positive_int("trainer.checkpoint.every", self.checkpoint.every, minimum=0)
        self.marching.windows = checks.positive_int("trainer.marching.windows", self.marching.windows)
        try:
            self.marching.breaks = [float(b) for b in self.marching.breaks]
        except (TypeError, ValueError):
            raise ValueError(f"trainer.marching.breaks must be a list of times, got {self.marching.breaks!r}") from None
        if not isinstance(self.marching.transfer, bool):
            raise ValueError(f"trainer.marching.transfer must be true or false, got {self.marching.transfer!r}")
        if self.marching.breaks and self.marching.windows != 1:
            raise ValueError(f"trainer.marching: give windows={self.marching.windows} or breaks={self.marching.breaks}, not both")
        if not isinstance(self.resume, str) or not self.resume:
            raise ValueError(f"trainer.resume must be auto, never or a checkpoint's path, got {self.resume!r}")
        self.divergence = checks.positive_float("trainer.divergence", self.divergence, allow_zero=True)
        self._check_grid_extension()
        self._check_interpretation()
        self._check_adaptive()

    @property
    def marches(self) -> bool:
        """Whether training marches through time windows."""
        return self.marching.windows > 1 or bool(self.marching.breaks)

    @property
    def second_order(self) -> str | None:
        """The second-order method (``lbfgs``, ``bfgs``, ``ssbfgs``, ``ssbroyden``), None for plain Adam."""
        return None if self.optimizer == "adam" else self.optimizer.removeprefix("adam_")

    @property
    def adam_end(self) -> int:
        """The step where Adam stops: 0 without Adam, ``steps`` for plain Adam."""
        if self.optimizer == "adam":
            return self.steps
        return self.adam_steps if self.optimizer.startswith("adam_") else 0

    def _check_grid_extension(self) -> None:
        ext = self.grid_extension
        ext.at = [checks.positive_int(f"trainer.grid_extension.at[{i}]", s) for i, s in enumerate(ext.at)]
        ext.grids = [checks.positive_int(f"trainer.grid_extension.grids[{i}]", g) for i, g in enumerate(ext.grids)]
        if len(ext.at) != len(ext.grids):
            raise ValueError(f"trainer.grid_extension: 'at' has {len(ext.at)} steps but 'grids' has {len(ext.grids)} sizes")
        if ext.at != sorted(set(ext.at)):
            raise ValueError(f"trainer.grid_extension.at must be increasing steps, got {ext.at}")
        if ext.grids != sorted(set(ext.grids)):
            raise ValueError(f"trainer.grid_extension.grids must increase, got {ext.grids}")
        ext.method = checks.one_of("trainer.grid_extension.method", ext.method, ("refit", "insert"))
        kn = self.knots
        _in_group("knots", lambda: (checks.one_of("method", kn.method, ("none", "insert", "move", "density", "descend")),
                                    checks.one_of("indicator", kn.indicator, ("residual", "input", "curvature")),
                                    checks.one_of("removal", kn.removal, ("indicator", "jump")),
                                    checks.positive_int("descent_steps", kn.descent_steps),
                                    checks.positive_int("every", kn.every), checks.positive_int("insert", kn.insert),
                                    checks.positive_int("budget", kn.budget, minimum=0),
                                    checks.number_in("margin", kn.margin, 0.0),
                                    checks.number_in("floor", kn.floor, 0.0, 1.0),
                                    checks.number_in("relax", kn.relax, 0.0, 1.0, low_open=True)))
        kn.until = None if kn.until is None else checks.positive_int("trainer.knots.until", kn.until, minimum=0)
        if not isinstance(kn.follow, bool):
            raise ValueError(f"trainer.knots.follow must be true or false, got {kn.follow!r}")
        for name, value, default, method in (("removal", kn.removal, "indicator", "move"),
                                             ("descent_steps", kn.descent_steps, 5, "descend")):
            if value != default and kn.method != method:
                raise ValueError(f"trainer.knots.{name}={value} applies to trainer.knots.method={method} only, "
                                 f"got method={kn.method}")
        for group, value in (("knots", kn.keep_curvature), ("grid_extension", ext.keep_curvature)):
            self._check_keep_curvature(group, value, "are not a matrix to map through the change")

    def _check_keep_curvature(self, group: str, value: object, why_not_lbfgs: str) -> None:
        """``trainer.<group>.keep_curvature`` is a bool, and true only with a dense quasi-Newton optimiser."""
        if not isinstance(value, bool):
            raise ValueError(f"trainer.{group}.keep_curvature must be true or false, got {value!r}")
        if value and self.second_order in (None, "lbfgs"):
            raise ValueError(f"trainer.{group}.keep_curvature=true needs a dense quasi-Newton optimiser (bfgs, ssbfgs, "
                             f"ssbroyden, or adam_ before one), got trainer.optimizer={self.optimizer}: L-BFGS's pairs "
                             f"{why_not_lbfgs}")

    def _check_interpretation(self) -> None:
        reg = self.reg
        reg.l1 = checks.positive_float("trainer.reg.l1", reg.l1, allow_zero=True)
        reg.entropy = checks.positive_float("trainer.reg.entropy", reg.entropy, allow_zero=True)
        reg.until = None if reg.until is None else checks.positive_int("trainer.reg.until", reg.until, minimum=0)
        self.prune_at = _step_or_none("trainer.prune_at", self.prune_at, self.steps)
        self.prune_threshold = checks.positive_float("trainer.prune_threshold", self.prune_threshold, allow_zero=True)
        sym = self.symbolic
        sym.at = _step_or_none("trainer.symbolic.at", sym.at, self.steps)
        if sym.library is not None:
            from kanpde.interpret.auto_symbolic import check_library  # the library's names live with the fits
            try:
                sym.library = check_library(list(sym.library))
            except ValueError as e:
                raise ValueError(f"trainer.symbolic.library: {e}") from None
        sym.complexity_penalty = checks.positive_float("trainer.symbolic.complexity_penalty", sym.complexity_penalty, allow_zero=True)
        if isinstance(sym.r2_min, bool) or not isinstance(sym.r2_min, (int, float)) or not sym.r2_min <= 1:
            raise ValueError(f"trainer.symbolic.r2_min must be a number <= 1, got {sym.r2_min!r}")

    def _check_adaptive(self) -> None:
        from kanpde.training.callbacks.lr_schedule import lr_factor  # its own checks name each key

        sch = self.schedule
        _in_group("schedule", lambda: lr_factor(0, sch.warmup, sch.decay, sch.decay_steps, sch.decay_rate,
                                                self.adam_end if sch.decay == "cosine" else None, sch.min_factor))
        loss = self.loss
        for key in ("rba", "rba_boundary"):
            if not isinstance(getattr(loss, key), bool):
                raise ValueError(f"trainer.loss.{key} must be true or false, got {getattr(loss, key)!r}")
        _in_group("loss", lambda: (checks.number_in("gamma", loss.gamma, 0.0, 1.0, high_open=True),
                                   checks.number_in("eta", loss.eta, 0.0, low_open=True),
                                   checks.one_of("rba_potential", loss.rba_potential, RBA_POTENTIALS),
                                   checks.number_in("rba_c", loss.rba_c, 0.0, low_open=True)))
        _in_group("loss", lambda: (checks.one_of("balance", loss.balance, ("none", "grad_norm", "ntk")),
                                   checks.positive_int("balance_period", loss.balance_period),
                                   checks.number_in("momentum", loss.momentum, 0.0, 1.0, high_open=True),
                                   checks.positive_int("ntk_points", loss.ntk_points)))
        _in_group("loss.causal", lambda: (checks.number_in("eps", loss.causal.eps, 0.0),
                                          checks.positive_int("slabs", loss.causal.slabs)))
        smp = self.sampler
        _in_group("sampler", lambda: (checks.one_of("adaptive", smp.adaptive, ("none", "rad")),
                                      checks.positive_int("period", smp.period), checks.number_in("k", smp.k, 0.0),
                                      checks.number_in("c", smp.c, 0.0), checks.positive_int("pool", smp.pool)))
        self._check_keep_curvature("sampler", smp.keep_curvature, "span two steps and would mix the old points' "
                                   "gradients with the new")

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain nested dicts (what a config file would hold)."""
        return dataclasses.asdict(self)
