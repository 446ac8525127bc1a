"""Adam's learning rate over the steps: a linear warm-up, then no, exponential or cosine decay."""
from __future__ import annotations

import math

import torch

from kanpde import checks
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import TrainerConfig
from kanpde.training.state import TrainState

DECAYS = ("none", "exponential", "cosine")


def lr_factor(step: int, warmup: int = 0, decay: str = "none", decay_steps: int = 1, decay_rate: float = 1.0,
              total: int | None = None, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Linear warm-up (step + 1) / warmup while step < warmup, then with s = step - warmup:
    ``none`` 1; ``exponential`` decay_rate ** (s / decay_steps); ``cosine``
    min_factor + (1 - min_factor)·½(1 + cos(π·s / (total - warmup))), held at min_factor from ``total`` on.
    """
    step = checks.positive_int("step", step, 0)
    warmup = checks.positive_int("warmup", warmup, 0)
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    decay_steps = checks.positive_int("decay_steps", decay_steps, 1)
    decay_rate = checks.number_in("decay_rate", decay_rate, 0.0, 1.0, low_open=True)
    min_factor = checks.number_in("min_factor", min_factor, 0.0, 1.0)
    if decay == "cosine":
        if total is None:
            raise ValueError("total must be given for decay='cosine', got None")
        total = checks.positive_int("total", total, 1)
        if total <= warmup:
            raise ValueError(f"total must be > warmup={warmup} for decay='cosine', got {total}")
    elif total is not None:
        total = checks.positive_int("total", total, 1)
    if step < warmup:
        return (step + 1) / warmup
    s = step - warmup
    if decay == "exponential":
        return decay_rate ** (s / decay_steps)
    if decay == "cosine":
        progress = min(s / (total - warmup), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


class LRSchedule(Callback):
    """Sets Adam's learning rate to ``lr * lr_factor(step)`` before every Adam step (cosine runs to the last Adam step)."""

    changes_objective = False

    def __init__(self, config: TrainerConfig) -> None:
        s = config.schedule
        self.lr = config.lr
        self.args = (s.warmup, s.decay, s.decay_steps, s.decay_rate, config.adam_end if s.decay == "cosine" else None, s.min_factor)

    def on_step_start(self, state: TrainState) -> None:
        if isinstance(state.optimizer, torch.optim.Adam):
            factor = lr_factor(state.step, *self.args)
            for group in state.optimizer.param_groups:
                group["lr"] = self.lr * factor
