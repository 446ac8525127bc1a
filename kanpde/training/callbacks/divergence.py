"""Divergence: a loss that grows far above its best (without becoming NaN) ends training with the best
state restored and ``status="diverged"``, instead of a run that reports ``ok`` at a loss of 1e231."""
from __future__ import annotations

import math

import torch

from kanpde.training.callbacks.base import Callback
from kanpde.training.callbacks.nonfinite import snapshot
from kanpde.training.state import TrainState


class DivergenceGuard(Callback):
    """Stops when the loss exceeds ``factor`` times the best loss since the model last changed."""

    changes_objective = False

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.best = math.inf
        self.best_step = -1
        self.best_state: dict[str, torch.Tensor] = {}

    def on_fit_start(self, state: TrainState) -> None:
        self.best, self.best_step, self.best_state = math.inf, -1, {}

    def on_model_change(self, state: TrainState) -> None:
        self.best, self.best_step, self.best_state = math.inf, -1, {}  # other shapes: compare from here on

    def on_step_end(self, state: TrainState) -> None:
        loss = state.loss
        if not math.isfinite(loss):
            return  # the non-finite check owns this case
        if loss < self.best:
            self.best, self.best_step, self.best_state = loss, state.step, snapshot(state.trainable)
        elif loss > self.factor * self.best:
            state.trainable.load_state_dict(self.best_state)
            state.fail(f"diverged at step {state.step}: loss {loss:.3e} is above trainer.divergence={self.factor:g} times the "
                       f"best {self.best:.3e} (step {self.best_step}); the model was restored to that step", "diverged", status="diverged")

    def checkpoint_state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "best_state": self.best_state}

    def restore_state(self, state: TrainState, saved: dict) -> None:
        if saved:
            self.best, self.best_step, self.best_state = saved["best"], saved["best_step"], saved["best_state"]
