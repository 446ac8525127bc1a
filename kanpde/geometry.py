"""Domains (boxes, intervals) and collocation-point sampling for physics-informed training.

All methods return float64 CPU tensors; the trainer moves them to its own dtype and device.
"""
from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import qmc

from . import checks

SAMPLERS = ("uniform", "sobol", "halton", "lhs")


def _make_engine(cls, dim: int, rng: np.random.Generator, **kwargs):
    """Build a scipy QMC engine seeded by ``rng`` (scipy >= 1.15 calls it ``rng``, older ``seed``)."""
    try:
        return cls(dim, rng=rng, **kwargs)
    except TypeError:
        return cls(dim, seed=rng, **kwargs)


def unit_samples(n: int, dim: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points in the unit cube [0, 1)^dim with ``method``; returns (n, dim) float64."""
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}; got {method!r}")
    if method == "uniform":
        return rng.random((n, dim))
    if method == "sobol":
        engine = _make_engine(qmc.Sobol, dim, rng, scramble=True)
    elif method == "halton":
        engine = _make_engine(qmc.Halton, dim, rng, scramble=True)
    else:
        engine = _make_engine(qmc.LatinHypercube, dim, rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        return np.asarray(engine.random(n), dtype=np.float64)


def _rng(seed: int | None, *extra: int) -> np.random.Generator:
    """Deterministic generator from ``seed`` (and sub-stream indices); fresh entropy if seed is None."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), *extra]) if extra else np.random.default_rng(seed)


class Domain(ABC):
    """Abstract base class for a closed domain in R^dim."""

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
    def sample_interior(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points inside the domain."""

    @abstractmethod
    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the boundary."""

    @abstractmethod
    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Outward unit normals at boundary points x: (n, dim) -> (n, dim)."""

    def grid(self, n_per_dim: int) -> torch.Tensor:
        """Tensor-product grid over the bounding box incl. its boundary: (n_per_dim**dim, dim), 'ij' order."""
        n_per_dim = checks.positive_int("n_per_dim", n_per_dim, minimum=2)
        lo, hi = self.bounds()
        axes = [torch.linspace(float(lo[i]), float(hi[i]), n_per_dim, dtype=torch.float64) for i in range(self.dim)]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([m.reshape(-1) for m in mesh], dim=1)


class Box(Domain):
    """Axis-aligned box [lower_0, upper_0] x ... x [lower_{d-1}, upper_{d-1}]."""

    def __init__(self, lower: Sequence[float], upper: Sequence[float]):
        lower, upper = [float(v) for v in lower], [float(v) for v in upper]
        if len(lower) != len(upper) or len(lower) == 0:
            raise ValueError(
                f"lower and upper must have the same length and be non-empty; got {len(lower)} and {len(upper)}")
        for name, vals in (("lower", lower), ("upper", upper)):
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    raise ValueError(f"{name}[{i}]={v} must be finite")
        for i, (lo, hi) in enumerate(zip(lower, upper)):
            if not hi > lo:
                raise ValueError(f"upper[{i}]={hi} must be greater than lower[{i}]={lo}")
        self.dim = len(lower)
        self.lower = torch.tensor(lower, dtype=torch.float64)
        self.upper = torch.tensor(upper, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"Box(lower={self.lower.tolist()}, upper={self.upper.tolist()})"

    @property
    def extent(self) -> torch.Tensor:
        """Side lengths (dim,)."""
        return self.upper - self.lower

    def _scale(self) -> float:
        return float(self.extent.max())

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower.clone(), self.upper.clone()

    def _as_points(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}); got {tuple(x.shape)}")
        return x

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_points(x)
        tol = 1e-12 * self._scale()
        return ((x >= self.lower - tol) & (x <= self.upper + tol)).all(dim=1)

    def _face_distances(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2*dim) distances to the face planes, ordered lower_0, upper_0, lower_1, upper_1, ..."""
        d = torch.stack([(x - self.lower).abs(), (x - self.upper).abs()], dim=2)
        return d.reshape(x.shape[0], 2 * self.dim)

    def _boundary_distance(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) Euclidean distance from each point to the box boundary."""
        outside = torch.linalg.vector_norm(x - torch.clamp(x, self.lower, self.upper), dim=1)
        return torch.where(outside > 0, outside, self._face_distances(x).min(dim=1).values)

    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        x = self._as_points(x)
        return self._boundary_distance(x) <= tol * self._scale()

    def sample_interior(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        n = checks.positive_int("n", n)
        u = torch.from_numpy(unit_samples(n, self.dim, method, _rng(seed)))
        return torch.clamp(self.lower + u * self.extent, self.lower, self.upper)

    def face_counts(self, n: int) -> list[int]:
        """Split ``n`` over the 2*dim faces (order lower_0, upper_0, ...) in proportion to their measure."""
        n = checks.positive_int("n", n)
        ext = self.extent.tolist()
        measures = [math.prod(ext[:i] + ext[i + 1:]) for i in range(self.dim) for _ in range(2)]
        quotas = [n * m / sum(measures) for m in measures]
        counts = [math.floor(q) for q in quotas]
        order = sorted(range(len(quotas)), key=lambda k: -(quotas[k] - counts[k]))  # stable: ties -> lower index
        for k in order[: n - sum(counts)]:
            counts[k] += 1
        return counts

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the faces, grouped face by face (lower_0, upper_0, lower_1, ...)."""
        if method not in SAMPLERS:
            raise ValueError(f"method must be one of {SAMPLERS}; got {method!r}")
        parts = []
        for k, count in enumerate(self.face_counts(n)):
            if count == 0:
                continue
            i, side = divmod(k, 2)
            pts = torch.empty(count, self.dim, dtype=torch.float64)
            pts[:, i] = self.upper[i] if side else self.lower[i]
            free = [j for j in range(self.dim) if j != i]
            if free:
                u = torch.from_numpy(unit_samples(count, len(free), method, _rng(seed, k)))
                lo, hi = self.lower[free], self.upper[free]
                pts[:, free] = torch.clamp(lo + u * (hi - lo), lo, hi)
            parts.append(pts)
        return torch.cat(parts, dim=0)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_points(x)
        dist = self._boundary_distance(x)
        far = dist > 1e-6 * self._scale()
        if far.any():
            k = int(torch.nonzero(far)[0, 0])
            raise ValueError(
                f"normal() needs boundary points; point {k} is {float(dist[k]):.3g} away from the boundary")
        face = self._face_distances(x).argmin(dim=1)  # first minimal face wins at corners
        normals = torch.zeros_like(x)
        normals[torch.arange(x.shape[0]), face // 2] = torch.where(face % 2 == 1, 1.0, -1.0).to(x.dtype)
        return normals


class Interval(Box):
    """1-D interval [a, b]."""

    def __init__(self, a: float, b: float):
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"a and b must be finite; got a={a}, b={b}")
        if not a < b:
            raise ValueError(f"Interval needs a < b; got a={a}, b={b}")
        super().__init__([a], [b])
        self.a, self.b = a, b

    def __repr__(self) -> str:
        return f"Interval(a={self.a}, b={self.b})"
