"""NaN rollback: a step whose loss or parameters are not finite ends training with the model restored
to its last finite state and ``status="failed"`` (the message names the step and the terms)."""
from __future__ import annotations

import math

import torch
from torch import nn

from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (parameters and buffers) to restore after a failure."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()}


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter is finite (one reduction, one device sync)."""
    params = [p.detach().flatten() for p in model.parameters()]
    return not params or bool(torch.isfinite(torch.cat(params)).all())


class NonFiniteRollback(Callback):
    """Keeps the last finite state; must run first among the ``on_step_end`` callbacks."""

    changes_objective = False

    def __init__(self) -> None:
        self.last_good: dict[str, torch.Tensor] = {}

    def on_fit_start(self, state: TrainState) -> None:
        self.last_good = snapshot(state.trainable)

    def on_model_change(self, state: TrainState) -> None:
        self.last_good = snapshot(state.trainable)  # same function, new shapes or parameters

    def on_step_end(self, state: TrainState) -> None:
        if math.isfinite(state.loss) and all_finite(state.trainable):
            self.last_good = snapshot(state.trainable)
            return
        bad = [t for t, v in state.terms.items() if not math.isfinite(v.item())]
        what = f"loss term(s) {', '.join(bad)}" if bad else "loss" if not math.isfinite(state.loss) else "parameters"
        state.trainable.load_state_dict(self.last_good)
        state.fail(f"non-finite {what} at step {state.step}; the model was restored to its last finite state", "non-finite")

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.last_good = snapshot(state.trainable)
