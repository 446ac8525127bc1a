"""The :class:`Domain` base class: sampling, boundaries, normals, distances and set operations (``a | b``, ``a - b``, ``a & b``)."""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


from kanpde import checks
from kanpde.geometry.sampling import MAX_BATCH, MIN_ACCEPTANCE, check_method, mc_volume, seeded_rng, unit_samples


class Domain(ABC):
    """Abstract base class for a closed domain in R^dim.

    A subclass provides ``bounds``, ``inside``, ``on_boundary``, ``sample_boundary`` and
    ``normal``; it inherits rejection sampling of the interior, a Monte Carlo ``measure`` and a
    grid filtered to the domain, and overrides them where it can do better.  ``a | b``,
    ``a - b`` and ``a & b`` build a :class:`~kanpde.geometry.Union`, ``Difference`` or
    ``Intersection``.
    """

    dim: int

    @abstractmethod
    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounding box: (lower (dim,), upper (dim,)) float64."""

    @abstractmethod
    def inside(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, dim) -> bool (n,); the boundary counts as inside."""

    @abstractmethod
    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        """x: (n, dim) -> bool (n,); ``tol`` is relative to the largest extent."""

    @abstractmethod
    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the boundary, uniform with respect to its measure."""

    @abstractmethod
    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Outward unit normals at boundary points x: (n, dim) -> (n, dim)."""

    # -- helpers shared by subclasses -------------------------------------------------------

    def _as_points(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}); got {tuple(x.shape)}")
        return x

    def _points_keep_dtype(self, x: torch.Tensor) -> torch.Tensor:
        """Like ``_as_points`` but a floating tensor keeps its dtype, device and autograd graph
        (distance functions run on the trainer's points)."""
        if not (isinstance(x, torch.Tensor) and x.is_floating_point()):
            return self._as_points(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}); got {tuple(x.shape)}")
        return x

    def _scale(self) -> float:
        """The largest extent of the bounding box; tolerances are relative to it."""
        lo, hi = self.bounds()
        return float((hi - lo).max())

    def _bbox_volume(self) -> float:
        lo, hi = self.bounds()
        return float((hi - lo).clamp(min=0).prod())

    # -- measures ---------------------------------------------------------------------------

    def measure(self) -> float:
        """Volume (area in 2-D, length in 1-D).

        The base class estimates it by Monte Carlo: the fraction of ``MC_POINTS`` (2**18)
        scrambled Sobol points (fixed seed 0) of the bounding box that ``inside`` accepts, times
        the box volume; the estimate is cached.  Shapes with a formula override it.
        """
        if getattr(self, "_measure_mc", None) is None:
            lo, hi = self.bounds()
            self._measure_mc = mc_volume(self.inside, lo, hi)
        return self._measure_mc

    def boundary_measure(self) -> float:
        """Measure of the boundary (perimeter in 2-D, surface area in 3-D, number of end points in 1-D)."""
        raise NotImplementedError(f"{type(self).__name__} does not define boundary_measure()")

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """A smooth distance-like function (n,): > 0 inside, exactly 0 on the whole boundary.

        Used for hard boundary constraints, u = lift + distance * net.  It need not be the
        Euclidean distance, and its sign outside the domain is unspecified.  Unlike the other
        methods it keeps x's dtype and device and is differentiable in x.
        """
        raise NotImplementedError(f"{type(self).__name__} has no distance() function")

    # -- sampling -----------------------------------------------------------------------------

    def sample_interior(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points inside the domain, by rejection from the bounding box.

        Candidates are ``method`` samples of the bounding box (batch k from sub-stream k of
        ``seed``); the first ``n`` that ``inside`` accepts are returned, so a QMC sequence keeps
        its order.  Cost: each accepted point takes on average (bounding-box volume / domain
        volume) draws and ``inside`` evaluations, e.g. 1000 for a sliver filling 0.1% of its
        box.  Raises ValueError when that fraction (from :meth:`measure`) is below
        ``MIN_ACCEPTANCE`` (1e-4).
        """
        n = checks.positive_int("n", n)
        check_method(method)
        lo, hi = self.bounds()
        box_volume = self._bbox_volume()
        acceptance = self.measure() / box_volume if box_volume > 0 else 0.0
        if not acceptance >= MIN_ACCEPTANCE:
            raise ValueError(
                f"{type(self).__name__}.sample_interior: the domain fills only {acceptance:.3g} of its bounding box "
                f"(need >= {MIN_ACCEPTANCE:g} for rejection sampling); it is empty or too thin")
        kept, total, draws, k = [], 0, 0, 0
        while total < n:
            m = min(math.ceil(1.2 * (n - total) / acceptance) + 64, MAX_BATCH)
            u = torch.from_numpy(unit_samples(m, self.dim, method, seeded_rng(seed, k)))
            cand = torch.clamp(lo + u * (hi - lo), lo, hi)
            sel = cand[self.inside(cand)]
            kept.append(sel)
            total, draws, k = total + sel.shape[0], draws + m, k + 1
            if total < n and draws >= 1_000_000 and total < MIN_ACCEPTANCE * draws:
                raise ValueError(f"{type(self).__name__}.sample_interior: only {total} of {draws} candidates "
                                 "fell inside the domain")
        return torch.cat(kept)[:n]

    def grid(self, n_per_dim: int) -> torch.Tensor:
        """Tensor-product grid over the bounding box incl. its boundary, keeping the points inside the
        domain: (m, dim), m <= n_per_dim**dim ('ij' order; all of them for a box)."""
        n_per_dim = checks.positive_int("n_per_dim", n_per_dim, minimum=2)
        lo, hi = self.bounds()
        axes = [torch.linspace(float(lo[i]), float(hi[i]), n_per_dim, dtype=torch.float64) for i in range(self.dim)]
        mesh = torch.meshgrid(*axes, indexing="ij")
        g = torch.stack([m.reshape(-1) for m in mesh], dim=1)
        return g[self.inside(g)]

    # -- set operations -----------------------------------------------------------------------

    def __or__(self, other: Domain):
        if not isinstance(other, Domain):
            return NotImplemented
        from kanpde.geometry.csg import Union
        return Union(self, other)

    def __sub__(self, other: Domain):
        if not isinstance(other, Domain):
            return NotImplemented
        from kanpde.geometry.csg import Difference
        return Difference(self, other)

    def __and__(self, other: Domain):
        if not isinstance(other, Domain):
            return NotImplemented
        from kanpde.geometry.csg import Intersection
        return Intersection(self, other)


