"""Finding the KAN inside a model (a hard-constraint wrapper holds it as ``net``)."""
from __future__ import annotations

from torch import nn

from kanpde.models.kan import KAN
from kanpde.pde.constraints import HardConstraint


def kan_of(model: nn.Module) -> KAN:
    """The KAN ``model`` is or wraps; a TypeError naming the model otherwise (an MLP has no edges to read)."""
    seen = model
    while not isinstance(seen, KAN):
        inner = seen._modules.get("net") if isinstance(seen, nn.Module) else None
        if inner is None:
            raise TypeError(f"interpretation needs a KAN; got {type(model).__name__}")
        seen = inner
    return seen


def require_kan(model: nn.Module, setting: str) -> KAN:
    """The KAN ``model`` is or wraps, or a ValueError saying that ``setting`` needs one."""
    try:
        return kan_of(model)
    except TypeError:
        inner = model.net if isinstance(model, HardConstraint) else model
        raise ValueError(f"{setting} needs a KAN model, got {type(inner).__name__}") from None
