"""What the trainer may ask of a model beyond ``forward``: capabilities declared once, as protocols.

The trainer and its callbacks check these with ``isinstance`` before training starts (a
hard-constraint wrapper passes the wrapped network's attributes through, so it qualifies too).
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class ParameterCounted(Protocol):
    """A model that counts its trained parameters the way the KAN paper does (pruned edges count nothing)."""

    def n_params(self) -> int: ...


@runtime_checkable
class GridModel(Protocol):
    """A KAN whose edge grids can be refined (grid extension) and moved to its activations' range."""

    grid: int
    basis: str
    layers: Sequence[nn.Module]  # each with ``coef``, ``extension_map(grid)`` and ``change_map(change)``

    def extend_grid(self, grid: int) -> None: ...

    def extension_is_exact(self, old: int, new: int) -> bool: ...

    def update_grid(self, x: torch.Tensor, margin: float = 0.01, extremes=None) -> None: ...


def n_params(model: nn.Module) -> int:
    """``model.n_params()`` where the model counts its own, else the number of trainable parameter entries."""
    if isinstance(model, ParameterCounted):
        return int(model.n_params())
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
