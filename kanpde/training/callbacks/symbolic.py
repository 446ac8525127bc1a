"""The symbolic step (Liu et al. 2024, §2.5.1): at one step every numeric KAN edge becomes its best
closed form c*f(a*x+b)+d from a library, and training goes on with the forms' parameters."""
from __future__ import annotations

from torch import nn

from kanpde.interpret.auto_symbolic import auto_symbolic
from kanpde.interpret.network import require_kan
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import SymbolicConfig
from kanpde.training.state import TrainState


class SymbolicStep(Callback):
    """Fits every edge at step ``config.at``; the chosen forms end in ``TrainResult.symbolic``."""

    def __init__(self, config: SymbolicConfig) -> None:
        self.config = config

    def check_model(self, model: nn.Module) -> None:
        if require_kan(model, "trainer.symbolic.at").embedding.active:
            raise ValueError("trainer.symbolic.at: a KAN with an input embedding has no formula in its inputs "
                             "(its first layer sees the embedded features); drop model.embedding or the symbolic step")

    def on_step_start(self, state: TrainState) -> None:
        if state.step != self.config.at:
            return
        state.end_stage()
        c = self.config
        x = state.points["pde"]["x"]
        if state.shards is not None:  # every rank fits the same forms: on all ranks' points, in one process's order
            x = state.shards.gather(x, state.shards.counts["pde"])
        state.symbolic = auto_symbolic(state.model, x, c.library, c.complexity_penalty, c.r2_min)
        state.model_changed()
