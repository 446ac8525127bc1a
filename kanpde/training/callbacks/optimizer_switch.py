"""Adam then L-BFGS (``trainer.optimizer=adam_lbfgs``): a fresh L-BFGS takes over at ``trainer.adam_steps``."""
from __future__ import annotations

from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


class SwitchOptimizer(Callback):
    """Replaces the optimiser at ``step``; :func:`kanpde.training.optimizers.make_optimizer` picks L-BFGS from there on."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_start(self, state: TrainState) -> None:
        if state.step == self.step:
            state.new_optimizer()
