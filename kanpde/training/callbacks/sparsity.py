"""The KAN paper's sparsity penalty (Liu et al. 2024, §2.5.1): L1 and entropy of the edges' mean
magnitudes on the PDE points, added to the loss (history column ``loss_reg``) before step ``until``."""
from __future__ import annotations

import torch
from torch import nn

from kanpde.interpret.network import require_kan
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import RegConfig
from kanpde.training.state import TrainState


class SparsityPenalty(Callback):
    """Adds ``l1 * L1 + entropy * entropy`` of the KAN's edges as the loss term ``reg``."""

    columns = ("loss_reg",)

    def __init__(self, config: RegConfig) -> None:
        self.config = config

    def check_model(self, model: nn.Module) -> None:
        require_kan(model, "trainer.reg")

    def extra_terms(self, state: TrainState) -> dict[str, torch.Tensor]:
        c = self.config
        if c.until is not None and state.step >= c.until:
            return {"reg": state.points["pde"]["x"].new_zeros(())}
        return {"reg": require_kan(state.model, "trainer.reg").regularization(state.points["pde"]["x"], c.l1, c.entropy)}
