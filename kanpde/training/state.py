"""What one training run carries from step to step, shared by the loop and its callbacks."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from kanpde.interpret.auto_symbolic import EdgeForm
from kanpde.pde.problem import Points, Problem
from kanpde.training.callbacks.base import CallbackList
from kanpde.training.config import TrainerConfig
from kanpde.training.distributed import Shards
from kanpde.training.optimizers import LastEvaluation, make_optimizer


@dataclass
class TrainResult:
    """What a training run returns: its history, its wall time and how it ended.

    ``history`` maps column names (``step``, ``time_s``, ``loss``, ``loss_<term>``, ``rel_l2``,
    ``grid`` and ``unknown_<name>`` for each learned coefficient, plus callbacks' columns such as
    ``causal_min_weight``) to equal-length lists.  ``stages`` holds one entry per grid stage (the
    model just before each grid extension, pruning or symbolic step, and at the end): ``step,
    time_s, grid, n_params`` and, with an exact solution, ``rel_l2, mse, h1_sq``.  ``status`` is
    ``ok``, ``failed``, ``diverged`` or ``interrupted`` (``message`` says why, ``cause`` in a word:
    ``non-finite``, ``diverged``, ``prune``, or the signal's name such as ``SIGTERM``).  ``pruned_width`` is the KAN's width after pruning
    (None without), ``symbolic`` the edge forms chosen by the symbolic step, ``points`` the
    collocation points at the end (RAD moves the PDE points), ``attention`` the final RBA weights.
    """

    history: dict[str, list[float]]
    wall_time_s: float
    steps_done: int
    status: str = "ok"
    message: str = ""
    stages: dict[str, list[float]] = field(default_factory=dict)
    pruned_width: list[int] | None = None
    symbolic: list[EdgeForm] = field(default_factory=list)
    points: Points = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    cause: str = ""


@dataclass
class TrainState:
    """The run in progress.

    ``model`` is the user's network (callbacks change it in place); ``loss_model`` is what the loss
    evaluates (the same module, or a compiled view of its derivative pass); ``trainable`` holds the
    model and the problem's unknown coefficients, what the optimiser moves.  ``loss`` and ``terms``
    are the current step's loss and plain per-term mean squares at its start; ``first_squares`` the
    per-point squares of the step's first evaluation and ``last_squares`` those of the latest;
    ``last_evaluation`` keeps the latest evaluation for the next quasi-Newton step.  A callback ends training with :meth:`fail`.
    """

    config: TrainerConfig
    problem: Problem
    model: nn.Module
    loss_model: nn.Module
    trainable: nn.Module
    points: Points
    callbacks: CallbackList
    derivatives: str
    seed: int = 0
    shards: Shards | None = None  # data-parallel: this rank's place and the terms' global point counts
    initial_points: Points = field(default_factory=dict)
    x_eval: torch.Tensor | None = None
    u_exact: torch.Tensor | None = None
    against_reference: bool = False
    step: int = 0
    optimizer: torch.optim.Optimizer | None = None
    loss: float = math.nan
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    first_squares: dict[str, torch.Tensor] | None = None
    last_squares: dict[str, torch.Tensor] | None = None
    last_evaluation: LastEvaluation = field(default_factory=LastEvaluation)
    history: dict[str, list[float]] = field(default_factory=dict)
    stages: dict[str, list[float]] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    pruned_width: list[int] | None = None
    symbolic: list[EdgeForm] = field(default_factory=list)
    stop: bool = False
    status: str = "ok"
    message: str = ""
    cause: str = ""
    t0: float = field(default_factory=time.perf_counter)

    @property
    def device(self) -> torch.device:
        return self.points["pde"]["x"].device

    @property
    def dtype(self) -> torch.dtype:
        return self.points["pde"]["x"].dtype

    def elapsed(self) -> float:
        """Seconds since training started."""
        return time.perf_counter() - self.t0

    def new_optimizer(self) -> None:
        """A fresh optimiser for the current step (Adam or L-BFGS by the schedule)."""
        self.optimizer = make_optimizer(self.config, self.trainable, self.step)

    def end_stage(self) -> None:
        """Close the current stage (callbacks record it) before the model changes."""
        self.callbacks.call("on_stage_end", self)

    def model_changed(self) -> None:
        """The model's parameters were replaced: a fresh optimiser, then every callback hears of it."""
        self.new_optimizer()
        self.callbacks.call("on_model_change", self)

    def fail(self, message: str, cause: str, status: str = "failed") -> None:
        """Stop training at this step with ``status`` (``failed``, ``diverged`` or ``interrupted``); ``cause`` names
        what stopped it in a word, for the caller to act on."""
        self.stop, self.status, self.message, self.cause = True, status, message, cause

    def result(self, steps_done: int) -> TrainResult:
        return TrainResult(self.history, self.elapsed(), steps_done, self.status, self.message, self.stages,
                           self.pruned_width, self.symbolic, self.points, self.attention, self.cause)

    def mean(self, term: str, values: torch.Tensor) -> torch.Tensor:
        """The mean of a term's per-point ``values`` (n,): over this rank's points, as its share of the global mean."""
        return values.mean() if self.shards is None else self.shards.mean(term, values)
