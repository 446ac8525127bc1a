"""Adam then a second-order method (``trainer.optimizer=adam_lbfgs``, ``adam_ssbroyden``, ...): it takes over at ``trainer.adam_steps``."""
from __future__ import annotations

from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


class SwitchOptimizer(Callback):
    """Replaces the optimiser at ``step``; :func:`kanpde.training.optimizers.make_optimizer` picks the second-order method from there on."""

    changes_objective = False

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_start(self, state: TrainState) -> None:
        if state.step == self.step:
            state.new_optimizer()
