"""Finding the KAN inside a model for interpretation (:func:`kanpde.models.kan.kan_of`, with the error a setting needs)."""
from __future__ import annotations

from torch import nn

from kanpde.models.kan import KAN, kan_of
from kanpde.pde.constraints import HardConstraint


def require_kan(model: nn.Module, setting: str) -> KAN:
    """The KAN ``model`` is or wraps, or a ValueError saying that ``setting`` needs one."""
    try:
        return kan_of(model)
    except TypeError:
        inner = model.net if isinstance(model, HardConstraint) else model
        raise ValueError(f"{setting} needs a KAN model, got {type(inner).__name__}") from None
