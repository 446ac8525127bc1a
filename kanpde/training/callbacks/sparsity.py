"""The KAN paper's sparsity penalty (Liu et al. 2024, §2.5.1): L1 and entropy of the edges' mean
magnitudes on the PDE points, added to the loss (history column ``loss_reg``) before step ``until``."""
from __future__ import annotations

import torch
from torch import nn

from kanpde.interpret.network import require_kan
from kanpde.models.kan import sparsity
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import RegConfig
from kanpde.training.distributed import Shards
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
        x = state.points["pde"]["x"]
        if c.until is not None and state.step >= c.until:
            return {"reg": x.new_zeros(())}
        model = require_kan(state.model, "trainer.reg")
        if state.shards is None:
            return {"reg": model.regularization(x, c.l1, c.entropy)}
        return {"reg": shared_penalty(model.edge_sizes(x, state.shards.counts["pde"]), c.l1, c.entropy, state.shards)}


def shared_penalty(mine: list[torch.Tensor], l1: float, entropy: float, shards: Shards) -> torch.Tensor:
    """This rank's part of the penalty of the edge sizes summed over the ranks (``mine``: this rank's shares).

    The penalty P of the global sizes G = sum_r m_r is not a sum over ranks, so each rank returns
    P(G)/N + ∇P(G)·(m_r − m_r.detach()): its value adds up to P(G) over the ranks, and its gradient,
    summed over the ranks as every gradient is, to ∇P(G)·∂G/∂θ, one process's gradient (one all-reduce
    of the sizes, none through autograd)."""
    flat = shards.sum(torch.cat([m.reshape(-1) for m in mine]))
    glob = [g.view_as(m).requires_grad_() for g, m in zip(flat.split([m.numel() for m in mine]), mine)]
    with torch.enable_grad():
        value = sparsity(glob, l1, entropy)
        slopes = torch.autograd.grad(value, glob)
    part = sum((s * m).sum() - (s * m.detach()).sum() for s, m in zip(slopes, mine))
    return value.detach() / shards.size + part

