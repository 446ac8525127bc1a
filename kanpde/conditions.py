"""Boundary conditions: each samples its own points and returns its residual there."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Union

import torch

from . import checks
from .derivatives import Fields
from .geometry import Domain

Value = Union[float, Callable[[torch.Tensor], torch.Tensor]]
"""A condition's right-hand side: a constant, or a function of the points x: (n, dim) -> (n,)."""


class Condition(ABC):
    """A condition imposed on (part of) the boundary.

    Args:
        value: right-hand side g, a constant or a function ``g(x: (n, dim)) -> (n,)``.
        output: the output it constrains.
        where: optional predicate ``where(x: (n, dim)) -> bool (n,)`` selecting part of the
            boundary (e.g. ``lambda x: x[:, 0] == -1``); None means the whole boundary.
        n: number of points; None takes the problem's ``n_boundary``.
        name: the loss term's name (default: the class name in lower case).
    """

    def __init__(
        self,
        value: Value = 0.0,
        output: str = "u",
        where: Callable[[torch.Tensor], torch.Tensor] | None = None,
        n: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(value):
            value = float(value)
        self.value = value
        self.output = output
        self.where = where
        self.n = None if n is None else checks.positive_int("n", n)
        self.name = name or type(self).__name__.lower()

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """g at the points x: (n, dim) -> (n,)."""
        if callable(self.value):
            g = self.value(x)
            return g.reshape(x.shape[0]) if g.numel() == x.shape[0] else g.expand(x.shape[0])
        return torch.full((x.shape[0],), self.value, dtype=x.dtype, device=x.device)

    def sample(self, domain: Domain, n: int, method: str, seed: int) -> dict[str, torch.Tensor]:
        """Points (and outward normals) on this condition's part of the boundary: ``{"x": (n, dim), "normal": (n, dim)}``."""
        n = self.n or n
        if self.where is None:
            x = domain.sample_boundary(n, method, seed)
        else:
            kept, total, attempt = [], 0, 0
            while total < n:
                if attempt == 20:
                    raise ValueError(f"condition {self.name!r}: its 'where' selects almost none of the boundary")
                cand = domain.sample_boundary(4 * n, method, seed + 7919 * attempt)
                sel = cand[self.where(cand).bool()]
                kept.append(sel)
                total += sel.shape[0]
                attempt += 1
            x = torch.cat(kept)
            # candidates come face by face: keep a random subset, not the first n
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
            x = x[keep.sort().values]
        return {"x": x, "normal": domain.normal(x)}

    @abstractmethod
    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        """Residual at this condition's points, (n,); ``f`` holds the model evaluated at ``points["x"]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output={self.output!r}, name={self.name!r})"


class Dirichlet(Condition):
    """u = g on the boundary."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return f[self.output] - self.target(points["x"])


class Neumann(Condition):
    """du/dn = g on the boundary, n the outward unit normal."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return (f.grad(self.output) * points["normal"]).sum(dim=1) - self.target(points["x"])
