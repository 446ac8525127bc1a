"""Set operations (constructive solid geometry) of two domains: :class:`Union`, :class:`Intersection`, :class:`Difference`."""
from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
import torch

from kanpde import checks
from kanpde.geometry.domain import Domain
from kanpde.geometry.sampling import MC_POINTS, MIN_ACCEPTANCE, check_method, mc_volume, seeded_rng, subseed


def _states(d: Domain, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(strictly inside, on the boundary, strictly outside) of domain ``d``, each bool (n,)."""
    on = d.on_boundary(x)
    inside = d.inside(x)
    return inside & ~on, on, ~inside & ~on


class _Combination(Domain):
    """Set operation of two domains ``a`` and ``b`` of equal dimension.

    The boundary is made of pieces of the operands' boundaries: ``_keep_a`` says which points of
    a's boundary lie on the result's boundary, ``_keep_b`` the same for b; where the two
    boundaries coincide, the piece is counted once (from a) and kept when the normals agree
    (union, intersection) or are opposite (difference).  Normals come from the operand the
    point lies on, b's negated for a difference.
    """

    _b_sign = 1.0

    def __init__(self, a: Domain, b: Domain):
        name = type(self).__name__
        for label, d in (("a", a), ("b", b)):
            if not isinstance(d, Domain):
                raise TypeError(f"{name} combines two Domains; {label} is a {type(d).__name__}")
        if a.dim != b.dim:
            raise ValueError(f"{name} needs two domains of the same dimension; got a.dim={a.dim} and b.dim={b.dim}")
        self.a, self.b, self.dim = a, b, a.dim
        self._measures: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.a!r}, {self.b!r})"

    @abstractmethod
    def _rule_a(self, in_b, on_b, out_b, dot):
        """Which of a's boundary points stay on the result's boundary, from where they lie relative to b."""

    @abstractmethod
    def _rule_b(self, in_a, on_a, out_a):
        """Which of b's boundary points stay on the result's boundary, from where they lie relative to a."""

    def _keep_a(self, x: torch.Tensor) -> torch.Tensor:
        """For points x on a's boundary: bool (n,), on the result's boundary."""
        in_b, on_b, out_b = _states(self.b, x)
        dot = torch.zeros(x.shape[0], dtype=torch.float64)
        if on_b.any():  # on both boundaries: compare the normals
            both = on_b.clone()
            both[on_b] = self.a.on_boundary(x[on_b])
            dot[both] = (self.a.normal(x[both]) * self.b.normal(x[both])).sum(dim=1)
        return self._rule_a(in_b, on_b, out_b, dot)

    def _keep_b(self, x: torch.Tensor) -> torch.Tensor:
        """For points x on b's boundary: bool (n,), on the result's boundary (and not counted from a)."""
        return self._rule_b(*_states(self.a, x))

    def _parts(self, x: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(from a, from b): points within ``tol`` of a kept piece of a's / b's boundary."""
        x = self._as_points(x)
        from_a = self.a.on_boundary(x, tol) & self._keep_a(x)
        from_b = ~from_a & self.b.on_boundary(x, tol) & self._keep_b(x)
        return from_a, from_b

    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        """Within ``tol`` (relative to each operand's extent) of a kept piece of an operand's boundary.

        The piece test looks at x itself, so within ``tol`` of where the operands' boundaries
        cross a point may be classified by the wrong side.
        """
        from_a, from_b = self._parts(x, tol)
        return from_a | from_b

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_points(x)
        from_a, from_b = self._parts(x, 1e-6)
        bad = ~(from_a | from_b)
        if bad.any():
            k = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f"normal() needs boundary points; point {k} is not on the boundary of this "
                             f"{type(self).__name__}")
        out = torch.empty_like(x)
        out[from_a] = self.a.normal(x[from_a])
        out[from_b] = self._b_sign * self.b.normal(x[from_b])
        return out

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points uniform on the result's boundary.

        Each round samples both operands' boundaries in proportion to their boundary measure
        (so at the same density), keeps the points on kept pieces, and repeats until there are
        ``n``; a seeded random subset of ``n`` is returned.  Cost: (boundary measure of a and b) /
        (boundary measure of the result) candidates per point.
        """
        n = checks.positive_int("n", n)
        check_method(method)
        ma, mb = self.a.boundary_measure(), self.b.boundary_measure()
        kept, total, draws, k, m = [], 0, 0, 0, max(2 * n, 64)
        while total < n:
            na = round(m * ma / (ma + mb))
            for op, count, keep, part in ((self.a, na, self._keep_a, 0), (self.b, m - na, self._keep_b, 1)):
                if count:
                    cand = op.sample_boundary(count, method, subseed(seed, k, part))
                    kept.append(cand[keep(cand)])
                    total += kept[-1].shape[0]
            draws, k = draws + m, k + 1
            if total < n and draws >= 100_000 and total < MIN_ACCEPTANCE * draws:
                raise ValueError(f"{type(self).__name__}.sample_boundary: only {total} of {draws} operand boundary "
                                 "points lie on the result's boundary; it is empty or almost so")
            rate = max(total / draws, MIN_ACCEPTANCE)
            m = min(math.ceil(1.2 * (n - total) / rate) + 64, 1 << 20)
        x = torch.cat(kept)
        pick = np.sort(seeded_rng(seed, 2**31 - 1).permutation(x.shape[0])[:n])
        return x[torch.from_numpy(pick)]

    def boundary_measure(self) -> float:
        """Monte Carlo estimate (cached): the kept fraction of 2**16 Sobol boundary points of each
        operand (seeds 0 and 1) times that operand's boundary measure."""
        if "boundary" not in self._measures:
            xa = self.a.sample_boundary(MC_POINTS // 4, "sobol", seed=0)
            xb = self.b.sample_boundary(MC_POINTS // 4, "sobol", seed=1)
            self._measures["boundary"] = (float(self._keep_a(xa).double().mean()) * self.a.boundary_measure()
                                          + float(self._keep_b(xb).double().mean()) * self.b.boundary_measure())
        return self._measures["boundary"]

    def _overlap(self) -> float:
        """Measure of a & b: Monte Carlo over the overlap of the bounding boxes (exact operand measures elsewhere)."""
        if "overlap" not in self._measures:
            (lo_a, hi_a), (lo_b, hi_b) = self.a.bounds(), self.b.bounds()
            lo, hi = torch.maximum(lo_a, lo_b), torch.minimum(hi_a, hi_b)
            self._measures["overlap"] = mc_volume(lambda x: self.a.inside(x) & self.b.inside(x), lo, hi)
        return self._measures["overlap"]


class Union(_Combination):
    """a | b.  ``measure()`` = measure(a) + measure(b) - a Monte Carlo estimate of measure(a & b)."""

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        (lo_a, hi_a), (lo_b, hi_b) = self.a.bounds(), self.b.bounds()
        return torch.minimum(lo_a, lo_b), torch.maximum(hi_a, hi_b)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return self.a.inside(x) | self.b.inside(x)

    def measure(self) -> float:
        return self.a.measure() + self.b.measure() - self._overlap()

    def _rule_a(self, in_b, on_b, out_b, dot):
        return out_b | (on_b & (dot > 0))

    def _rule_b(self, in_a, on_a, out_a):
        return out_a


class Intersection(_Combination):
    """a & b.  ``measure()`` is a Monte Carlo estimate; ``distance()`` = a.distance * b.distance."""

    def __init__(self, a: Domain, b: Domain):
        super().__init__(a, b)
        lo, hi = self.bounds()
        if (hi < lo).any():
            raise ValueError(f"the Intersection of {a!r} and {b!r} is empty: their bounding boxes do not overlap")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        (lo_a, hi_a), (lo_b, hi_b) = self.a.bounds(), self.b.bounds()
        return torch.maximum(lo_a, lo_b), torch.minimum(hi_a, hi_b)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return self.a.inside(x) & self.b.inside(x)

    def measure(self) -> float:
        return self._overlap()

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """a.distance(x) * b.distance(x): positive inside both, 0 on either boundary."""
        return self.a.distance(x) * self.b.distance(x)

    def _rule_a(self, in_b, on_b, out_b, dot):
        return in_b | (on_b & (dot > 0))

    def _rule_b(self, in_a, on_a, out_a):
        return in_a


class Difference(_Combination):
    """a - b (closed: the boundary of the hole belongs to it).  Points on b's boundary get the
    normal -normal_b; ``measure()`` = measure(a) - a Monte Carlo estimate of measure(a & b)."""

    _b_sign = -1.0

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a.bounds()

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_points(x)
        return self.a.inside(x) & (~self.b.inside(x) | self.b.on_boundary(x))

    def measure(self) -> float:
        return self.a.measure() - self._overlap()

    def _rule_a(self, in_b, on_b, out_b, dot):
        return out_b | (on_b & (dot < 0))

    def _rule_b(self, in_a, on_a, out_a):
        return in_a
