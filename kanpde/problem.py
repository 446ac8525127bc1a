"""The ``Problem`` base class: a PDE with its domain, conditions, residual and (optional) exact solution."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping, Sequence

import torch
from torch import nn

from . import checks
from .conditions import Condition
from .derivatives import Fields, Plan
from .geometry import SAMPLERS, Domain

Points = dict[str, dict[str, torch.Tensor]]
"""Collocation points by loss term: ``{"pde": {"x": ...}, "<condition name>": {"x": ..., "normal": ...}}``."""

DEFAULT_EVAL_POINTS = {1: 1000, 2: 100, 3: 30}


class Problem(ABC):
    """A PDE problem.  Subclasses set ``name``, ``inputs`` and ``outputs`` and define ``residual``.

    Args:
        domain: where the PDE holds.
        conditions: boundary conditions; their names must be unique.
        weights: loss weight per term (``"pde"`` and each condition's name); missing terms weigh 1.
        n_interior: collocation points for the PDE residual.
        n_boundary: points for each condition that does not set its own ``n``.
        sampler: how points are drawn: ``uniform``, ``sobol``, ``halton`` or ``lhs``.
        eval_points_per_dim: evaluation grid resolution per dimension (default 1000, 100, 30 for 1-3 D).
    """

    name: str = "problem"
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("u",)

    def __init__(
        self,
        domain: Domain,
        conditions: Sequence[Condition] = (),
        weights: Mapping[str, float] | None = None,
        n_interior: int = 1000,
        n_boundary: int = 100,
        sampler: str = "sobol",
        eval_points_per_dim: int | None = None,
    ) -> None:
        if domain.dim != len(self.inputs):
            raise ValueError(f"{self.name}: domain has dimension {domain.dim} but inputs are {self.inputs}")
        clash = set(self.inputs) & set(self.outputs)
        if clash:
            raise ValueError(f"{self.name}: names used as both input and output: {sorted(clash)}")
        self.domain = domain
        self.conditions = list(conditions)
        names = ["pde"] + [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: loss term names must be unique, got {names}")
        for c in self.conditions:
            if c.output not in self.outputs:
                raise ValueError(f"{self.name}: condition {c.name!r} constrains unknown output {c.output!r}; outputs are {self.outputs}")
        weights = dict(weights or {})
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights: unknown loss term(s) {sorted(unknown)}; the terms of {self.name} are {names}")
        self.weights = {n: checks.positive_float(f"weights.{n}", weights.get(n, 1.0), allow_zero=True) for n in names}
        self.n_interior = checks.positive_int("n_interior", n_interior)
        self.n_boundary = checks.positive_int("n_boundary", n_boundary)
        self.sampler = checks.one_of("sampler", sampler, SAMPLERS)
        if eval_points_per_dim is None:
            eval_points_per_dim = DEFAULT_EVAL_POINTS.get(domain.dim, 10)
        self.eval_points_per_dim = checks.positive_int("eval_points_per_dim", eval_points_per_dim, minimum=2)
        self._plans: dict[str, Plan | None] = {}  # loss term -> second partials its residual asked for

    @property
    def terms(self) -> list[str]:
        """Names of the loss terms: ``"pde"`` then each condition's."""
        return ["pde"] + [c.name for c in self.conditions]

    @abstractmethod
    def residual(self, f: Fields) -> torch.Tensor | Sequence[torch.Tensor]:
        """PDE residual at the interior points held by ``f``: (batch,) or one such tensor per equation."""

    def exact(self, x: torch.Tensor) -> torch.Tensor | None:
        """Exact solution at x: (n, dim) -> (n, n_out), or None when there is none.

        Written with torch operations so that its gradient (for the H1 error) comes from autograd.
        """
        return None

    def sample_points(self, seed: int = 0) -> Points:
        """Draw the collocation points for every loss term (float64, CPU)."""
        points: Points = {"pde": {"x": self.domain.sample_interior(self.n_interior, self.sampler, seed)}}
        for i, c in enumerate(self.conditions):
            points[c.name] = c.sample(self.domain, self.n_boundary, self.sampler, seed + 1000 * (i + 1))
        return points

    def eval_points(self) -> torch.Tensor:
        """The evaluation grid, (m, dim) float64."""
        return self.domain.grid(self.eval_points_per_dim)

    def losses(self, model: nn.Module, points: Points, derivatives: str = "auto") -> dict[str, torch.Tensor]:
        """Unweighted mean squared residual of every loss term.

        ``derivatives`` picks the back end of :class:`Fields` (``auto``, ``forward``, ``autograd``).
        Each term remembers which derivatives its residual asked for, so that from the second
        call on the forward back end computes them all in one pass.
        """
        plans = self._plans

        def fields(term: str, x: torch.Tensor) -> Fields:
            return Fields(model, x, self.inputs, self.outputs, derivatives, plans.get(term))

        f = fields("pde", points["pde"]["x"])
        r = self.residual(f)
        rs = [r] if isinstance(r, torch.Tensor) else list(r)
        out = {"pde": sum(ri.square().mean() for ri in rs)}
        plans["pde"] = f.plan
        for c in self.conditions:
            p = points[c.name]
            fc = fields(c.name, p["x"])
            out[c.name] = c.residual(fc, p).square().mean()
            plans[c.name] = fc.plan
        return out
