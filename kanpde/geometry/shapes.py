"""Round and polygonal domains: balls, disks and simple polygons."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.special import ndtri

from kanpde import checks
from kanpde.geometry.domain import Domain
from kanpde.geometry.sampling import seeded_rng, unit_samples


def _unit_ball_volume(d: int) -> float:
    return math.pi ** (d / 2) / math.gamma(d / 2 + 1)


def _directions(u: np.ndarray, d: int) -> np.ndarray:
    """Map unit samples (n, k) onto uniformly distributed unit vectors (n, d); k = ``Ball._direction_dim(d)``.

    Area-preserving maps in 1-3 D (so QMC points stay evenly spread on the sphere), normalised
    Gaussian vectors (inverse normal CDF of d columns) above.
    """
    if d == 1:
        return np.where(u[:, :1] < 0.5, -1.0, 1.0)
    if d == 2:
        a = 2 * math.pi * u[:, 0]
        return np.stack([np.cos(a), np.sin(a)], axis=1)
    if d == 3:
        z, a = 1 - 2 * u[:, 0], 2 * math.pi * u[:, 1]
        s = np.sqrt(np.clip(1 - z * z, 0.0, None))
        return np.stack([s * np.cos(a), s * np.sin(a), z], axis=1)
    g = ndtri(np.maximum(u, np.finfo(np.float64).tiny))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


class Ball(Domain):
    """Closed ball |x - center| <= radius in any dimension, with exact uniform sampling."""

    def __init__(self, center: Sequence[float], radius: float):
        center = [float(v) for v in center]
        if len(center) == 0:
            raise ValueError("center must have at least one coordinate; got []")
        for i, v in enumerate(center):
            if not math.isfinite(v):
                raise ValueError(f"center[{i}]={v} must be finite")
        self.radius = checks.positive_float("radius", radius)
        self.center = torch.tensor(center, dtype=torch.float64)
        self.dim = len(center)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(center={self.center.tolist()}, radius={self.radius})"

    @staticmethod
    def _direction_dim(d: int) -> int:
        return d if d > 3 else max(d - 1, 1)

    @property
    def _boundary_unit_dim(self) -> int:
        """Unit-cube columns that :meth:`_boundary_from_unit` maps onto the sphere."""
        return self._direction_dim(self.dim)

    def _boundary_from_unit(self, u: np.ndarray) -> torch.Tensor:
        return self.center + self.radius * torch.from_numpy(_directions(u, self.dim))

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.center - self.radius, self.center + self.radius

    def measure(self) -> float:
        return _unit_ball_volume(self.dim) * self.radius ** self.dim

    def boundary_measure(self) -> float:
        return self.dim * _unit_ball_volume(self.dim) * self.radius ** (self.dim - 1)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """(r^2 - |x - c|^2) / r^2: 1 at the centre, 0 on the sphere, negative outside."""
        x = self._points_keep_dtype(x)
        return 1 - ((x - self.center.to(x)) ** 2).sum(dim=1) / self.radius ** 2

    def _radii(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x - self.center, dim=1)

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        return self._radii(self._as_points(x)) <= self.radius + 1e-12 * self._scale()

    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        return (self._radii(self._as_points(x)) - self.radius).abs() <= tol * self._scale()

    def sample_interior(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """Exact: radius r * u^(1/dim) times a uniform direction, all from one ``method`` sample."""
        n = checks.positive_int("n", n)
        d = self.dim
        if d == 1:
            u = unit_samples(n, 1, method, seeded_rng(seed))
            return self.center + self.radius * torch.from_numpy(2 * u - 1)
        u = unit_samples(n, 1 + self._direction_dim(d), method, seeded_rng(seed))
        r = self.radius * u[:, :1] ** (1.0 / d)
        return self.center + torch.from_numpy(r * _directions(u[:, 1:], d))

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        n = checks.positive_int("n", n)
        return self._boundary_from_unit(unit_samples(n, self._boundary_unit_dim, method, seeded_rng(seed)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        x = self._as_points(x)
        r = self._radii(x)
        dist = (r - self.radius).abs()
        far = dist > 1e-6 * self._scale()
        if far.any():
            k = int(torch.nonzero(far)[0, 0])
            raise ValueError(
                f"normal() needs boundary points; point {k} is {float(dist[k]):.3g} away from the boundary")
        return (x - self.center) / r[:, None]


class Disk(Ball):
    """Closed disk in the plane: a 2-D :class:`Ball`."""

    def __init__(self, center: Sequence[float], radius: float):
        center = list(center)
        if len(center) != 2:
            raise ValueError(f"Disk needs a 2-D center; got {len(center)} coordinates (use Ball in other dimensions)")
        super().__init__(center, radius)


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangle (a, b, c); > 0 when counter-clockwise."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])


def _first_crossing(v: np.ndarray) -> tuple[int, int, str] | None:
    """First pair of edges (i, j, how) of the closed polyline ``v`` that meet other than at a shared vertex."""
    m = len(v)
    p, q = v, np.roll(v, -1, axis=0)
    scale = float(np.ptp(v, axis=0).max())
    eps, eps2 = 1e-12 * scale, 1e-12 * scale**2
    a, b, c, d = p[:, None], q[:, None], p[None, :], q[None, :]

    def side(o):
        return np.where(np.abs(o) <= eps2, 0, np.sign(o))

    def within(s, t, r):  # r inside the bounding box of segment s-t
        return ((np.minimum(s, t) - eps <= r) & (r <= np.maximum(s, t) + eps)).all(axis=-1)

    o1, o2, o3, o4 = side(_orient(a, b, c)), side(_orient(a, b, d)), side(_orient(c, d, a)), side(_orient(c, d, b))
    meet = ((o1 * o2 < 0) & (o3 * o4 < 0)) | ((o1 == 0) & within(a, b, c)) | ((o2 == 0) & within(a, b, d)) \
        | ((o3 == 0) & within(c, d, a)) | ((o4 == 0) & within(c, d, b))
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    adjacent = (j == i + 1) | ((i == 0) & (j == m - 1))
    for ii, jj in zip(*np.nonzero(meet & (i < j) & ~adjacent)):
        return int(ii), int(jj), "cross"
    # adjacent edges share one vertex; they overlap when the boundary folds back along a line
    e = q - p
    e_next = np.roll(e, -1, axis=0)
    fold = (np.abs(_orient(np.zeros_like(e), e, e_next)) <= eps2) & ((e * e_next).sum(axis=1) < 0)
    for ii in np.nonzero(fold)[0]:
        jj = (ii + 1) % m
        return (int(min(ii, jj)), int(max(ii, jj)), "overlap")
    return None


class Polygon(Domain):
    """Simple polygon (any orientation given, stored counter-clockwise), e.g. an L-shape.

    The interior is sampled by rejection from the bounding box (see :meth:`Domain.sample_interior`);
    the boundary uniformly by arc length.
    """

    def __init__(self, vertices: Sequence[Sequence[float]]):
        try:
            v = np.asarray(vertices, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"vertices must be a sequence of (x, y) pairs; got {vertices!r}") from None
        if v.ndim != 2 or v.shape[1] != 2:
            raise ValueError(f"vertices must be a sequence of (x, y) pairs; got an array of shape {v.shape}")
        m = len(v)
        if m < 3:
            raise ValueError(f"a Polygon needs at least 3 vertices; got {m}")
        bad = np.nonzero(~np.isfinite(v).all(axis=1))[0]
        if bad.size:
            raise ValueError(f"vertex {bad[0]}={tuple(v[bad[0]].tolist())} must be finite")
        for i in range(m):
            j = (i + 1) % m
            if (v[i] == v[j]).all():
                raise ValueError(f"edge {i} (vertex {i} -> vertex {j}) has zero length: both vertices are "
                                 f"{tuple(v[i].tolist())}; list each vertex once, without closing the ring")
        if len(np.unique(v, axis=0)) < 3:
            raise ValueError(f"a Polygon needs at least 3 distinct vertices; got {len(np.unique(v, axis=0))}")
        hit = _first_crossing(v)
        if hit is not None:
            i, j, how = hit

            def edge(k):
                return f"edge {k} ({tuple(v[k].tolist())} -> {tuple(v[(k + 1) % m].tolist())})"
            verb = "crosses or touches" if how == "cross" else "folds back onto"
            raise ValueError(f"the polygon is not simple: {edge(i)} {verb} {edge(j)}")
        area2 = float((v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]).sum())
        if area2 < 0:
            v = v[::-1].copy()
        self.vertices = torch.from_numpy(np.ascontiguousarray(v))
        self.dim = 2
        self._p, self._q = self.vertices, torch.roll(self.vertices, -1, dims=0)
        self._lengths = torch.linalg.vector_norm(self._q - self._p, dim=1)
        edge = self._q - self._p
        self._normals = torch.stack([edge[:, 1], -edge[:, 0]], dim=1) / self._lengths[:, None]  # outward for CCW
        self._area = abs(area2) / 2

    def __repr__(self) -> str:
        return f"Polygon(vertices={self.vertices.tolist()})"

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vertices.min(dim=0).values, self.vertices.max(dim=0).values

    def measure(self) -> float:
        """Area by the shoelace formula."""
        return self._area

    def boundary_measure(self) -> float:
        return float(self._lengths.sum())

    def _scan(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass over the edges: (even-odd parity (n,), distance to the boundary (n,), nearest edge (n,)).

        Of two equally near edges, one reached at its end point loses: a vertex belongs to the edge
        starting there (counter-clockwise order).
        """
        x = self._as_points(x)
        px, py = x[:, 0], x[:, 1]
        parity = torch.zeros(x.shape[0], dtype=torch.bool)
        best = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
        nearest = torch.zeros(x.shape[0], dtype=torch.long)
        at_end = torch.zeros(x.shape[0], dtype=torch.bool)  # the nearest point found so far ends its edge
        for k in range(self._p.shape[0]):
            (x1, y1), (x2, y2) = self._p[k].tolist(), self._q[k].tolist()
            if y1 != y2:  # a horizontal edge never straddles the ray
                straddle = (y1 > py) != (y2 > py)
                parity ^= straddle & (px < x1 + (py - y1) * (x2 - x1) / (y2 - y1))
            e = self._q[k] - self._p[k]
            t = (((x - self._p[k]) * e).sum(dim=1) / float((e * e).sum())).clamp(0.0, 1.0)
            dist = torch.linalg.vector_norm(x - (self._p[k] + t[:, None] * e), dim=1)
            closer = (dist < best) | ((dist == best) & at_end & (t < 1))
            best = torch.where(closer, dist, best)
            nearest = torch.where(closer, k, nearest)
            at_end = torch.where(closer, t == 1, at_end)
        return parity, best, nearest

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        parity, dist, _ = self._scan(x)
        return parity | (dist <= 1e-12 * self._scale())

    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        return self._scan(x)[1] <= tol * self._scale()

    _boundary_unit_dim = 1

    def _boundary_from_unit(self, u: np.ndarray) -> torch.Tensor:
        """Arc-length map: u in [0, 1) -> the point at u * perimeter along the boundary."""
        ends = torch.cumsum(self._lengths, dim=0)
        s = torch.from_numpy(u[:, 0]) * ends[-1]
        k = torch.searchsorted(ends, s, right=True).clamp(max=len(ends) - 1)
        t = ((s - (ends[k] - self._lengths[k])) / self._lengths[k]).clamp(0.0, 1.0)
        return self._p[k] + t[:, None] * (self._q[k] - self._p[k])

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, 2) points uniform in arc length (so each edge gets its share of the perimeter)."""
        n = checks.positive_int("n", n)
        return self._boundary_from_unit(unit_samples(n, 1, method, seeded_rng(seed)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """The outward normal of the nearest edge (at a vertex: of the edge starting there, CCW order)."""
        _, dist, nearest = self._scan(x)
        far = dist > 1e-6 * self._scale()
        if far.any():
            k = int(torch.nonzero(far)[0, 0])
            raise ValueError(
                f"normal() needs boundary points; point {k} is {float(dist[k]):.3g} away from the boundary")
        return self._normals[nearest]


