"""Axis-aligned boxes (:class:`Box`, :class:`Interval`) and space-time cylinders (:class:`TimeDomain`)."""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch


from kanpde import checks
from kanpde.geometry.domain import Domain
from kanpde.geometry.sampling import check_method, random_pairing, seeded_rng, subseed, unit_samples


def _check_face(dim: int, axis: int, side: int) -> tuple[int, int]:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not 0 <= axis < dim:
        raise ValueError(f"axis must be an integer in 0..{dim - 1}; got {axis!r}")
    if isinstance(side, bool) or side not in (0, 1):
        raise ValueError(f"side must be 0 (lower face) or 1 (upper face); got {side!r}")
    return int(axis), int(side)


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

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lower.clone(), self.upper.clone()

    def measure(self) -> float:
        return float(self.extent.prod())

    def boundary_measure(self) -> float:
        return float(sum(self._face_measures()))

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """prod_i (x_i - lower_i)(upper_i - x_i) / (extent_i / 2)^2: 1 at the centre, 0 on every face."""
        x = self._points_keep_dtype(x)
        lo, hi = self.lower.to(x), self.upper.to(x)
        return ((x - lo) * (hi - x) / ((hi - lo) / 2) ** 2).prod(dim=1)

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
        u = torch.from_numpy(unit_samples(n, self.dim, method, seeded_rng(seed)))
        return torch.clamp(self.lower + u * self.extent, self.lower, self.upper)

    def _face_measures(self) -> list[float]:
        ext = self.extent.tolist()
        return [math.prod(ext[:i] + ext[i + 1:]) for i in range(self.dim) for _ in range(2)]

    def face_counts(self, n: int) -> list[int]:
        """Split ``n`` over the 2*dim faces (order lower_0, upper_0, ...) in proportion to their measure."""
        n = checks.positive_int("n", n)
        measures = self._face_measures()
        quotas = [n * m / sum(measures) for m in measures]
        counts = [math.floor(q) for q in quotas]
        order = sorted(range(len(quotas)), key=lambda k: -(quotas[k] - counts[k]))  # stable: ties -> lower index
        for k in order[: n - sum(counts)]:
            counts[k] += 1
        return counts

    def _face_points(self, axis: int, side: int, n: int, method: str, rng: np.random.Generator) -> torch.Tensor:
        """(n, dim) points on face x_axis = lower (side 0) / upper (side 1), free coordinates from ``rng``."""
        pts = torch.empty(n, self.dim, dtype=torch.float64)
        pts[:, axis] = self.upper[axis] if side else self.lower[axis]
        free = [j for j in range(self.dim) if j != axis]
        if free:
            u = torch.from_numpy(unit_samples(n, len(free), method, rng))
            lo, hi = self.lower[free], self.upper[free]
            pts[:, free] = torch.clamp(lo + u * (hi - lo), lo, hi)
        return pts

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the faces, grouped face by face (lower_0, upper_0, lower_1, ...)."""
        check_method(method)
        parts = [self._face_points(k // 2, k % 2, count, method, seeded_rng(seed, k))
                 for k, count in enumerate(self.face_counts(n)) if count]
        return torch.cat(parts, dim=0)

    def sample_face(self, axis: int, side: int, n: int, method: str = "uniform",
                    seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the face x_axis = lower[axis] (side 0) or upper[axis] (side 1).

        The free coordinates depend on (axis, n, method, seed) but not on ``side``: the two
        faces sampled with the same integer seed give matching point pairs, as a periodic
        condition u(lower face) = u(upper face) needs.
        """
        axis, side = _check_face(self.dim, axis, side)
        n = checks.positive_int("n", n)
        check_method(method)
        return self._face_points(axis, side, n, method, seeded_rng(seed, 2 * self.dim, axis))

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


class TimeDomain(Domain):
    """Space-time cylinder ``space`` x [t0, t1]; time is the LAST coordinate (inputs like ("x", "y", "t")).

    ``sample_boundary``, ``on_boundary`` and ``normal`` concern the lateral boundary
    (space boundary x [t0, t1]) only; the initial slice has its own ``sample_initial`` and
    ``on_initial``, and the final slice t = t1 is no boundary of a time-dependent problem.
    """

    def __init__(self, space: Domain, t0: float, t1: float):
        if not isinstance(space, Domain):
            raise TypeError(f"space must be a Domain; got {type(space).__name__}")
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1)):
            raise ValueError(f"t0 and t1 must be finite; got t0={t0}, t1={t1}")
        if not t0 < t1:
            raise ValueError(f"TimeDomain needs t0 < t1; got t0={t0}, t1={t1}")
        self.space, self.t0, self.t1 = space, t0, t1
        self.dim = space.dim + 1

    def __repr__(self) -> str:
        return f"TimeDomain({self.space!r}, t0={self.t0}, t1={self.t1})"

    @property
    def duration(self) -> float:
        return self.t1 - self.t0

    def _space_time_box(self) -> Box:
        """space x [t0, t1] as a Box (only for a Box space)."""
        return Box(self.space.lower.tolist() + [self.t0], self.space.upper.tolist() + [self.t1])

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._as_points(x)
        return x[:, :-1], x[:, -1]

    def _in_time(self, t: torch.Tensor, tol: float) -> torch.Tensor:
        pad = tol * self.duration
        return (t >= self.t0 - pad) & (t <= self.t1 + pad)

    def _with_time(self, xs: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64).expand(xs.shape[0])
        return torch.cat([xs, t[:, None]], dim=1)

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.space.bounds()
        return (torch.cat([lo, torch.tensor([self.t0], dtype=torch.float64)]),
                torch.cat([hi, torch.tensor([self.t1], dtype=torch.float64)]))

    def measure(self) -> float:
        return self.space.measure() * self.duration

    def boundary_measure(self) -> float:
        """Measure of the lateral boundary, space.boundary_measure() * (t1 - t0)."""
        return self.space.boundary_measure() * self.duration

    def inside(self, x: torch.Tensor) -> torch.Tensor:
        xs, t = self._split(x)
        return self.space.inside(xs) & self._in_time(t, 1e-12)

    def on_boundary(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        """On the lateral boundary; ``tol`` is relative to the space's extent (and to t1 - t0 in time)."""
        xs, t = self._split(x)
        return self.space.on_boundary(xs, tol) & self._in_time(t, tol)

    def on_initial(self, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
        """On the initial slice space x {t0}; ``tol`` is relative to t1 - t0."""
        xs, t = self._split(x)
        return ((t - self.t0).abs() <= tol * self.duration) & self.space.inside(xs)

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """The space's distance function of the spatial coordinates: 0 on the lateral boundary."""
        x = self._points_keep_dtype(x)
        return self.space.distance(x[:, :-1])

    @staticmethod
    def at_time(x: torch.Tensor, t: float) -> torch.Tensor:
        """The points x: (n, dim) moved to time t (the last coordinate replaced), keeping the graph to the
        space coordinates: where an initial value or an earlier time window is read."""
        return torch.cat([x[:, :-1], torch.full_like(x[:, -1:], t)], dim=1)

    def time_distance(self, x: torch.Tensor) -> torch.Tensor:
        """(t - t0) / (t1 - t0): 0 on the initial slice, 1 at t1 (u = u0 + time_distance * net);
        keeps x's dtype and device like :meth:`distance`."""
        x = self._points_keep_dtype(x)
        return (x[:, -1] - self.t0) / self.duration

    def sample_interior(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points of space x [t0, t1], drawn jointly in all dim coordinates (so QMC stays
        low-discrepancy): the space-time box for a Box space, else rejection from the space-time
        bounding box (cost as in :meth:`Domain.sample_interior`)."""
        if isinstance(self.space, Box):
            return self._space_time_box().sample_interior(n, method, seed)
        return super().sample_interior(n, method, seed)

    def sample_boundary(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points on the lateral boundary, uniform in space boundary x [t0, t1].

        Box space: the spatial faces of the space-time box, face by face.  A space whose boundary
        is a map of the unit cube (Ball, Disk, Polygon): one joint sample.  Otherwise (CSG): the
        space's boundary sample with times from a stratified sample in random order.
        """
        n = checks.positive_int("n", n)
        check_method(method)
        space = self.space
        if isinstance(space, Box):
            st = self._space_time_box()
            parts = [st._face_points(k // 2, k % 2, count, method, seeded_rng(seed, k))
                     for k, count in enumerate(space.face_counts(n)) if count]
            return torch.cat(parts, dim=0)
        k = getattr(space, "_boundary_unit_dim", None)
        if k is not None:
            u = unit_samples(n, k + 1, method, seeded_rng(seed))
            xs, tu = space._boundary_from_unit(u[:, :k]), u[:, k]
        else:
            xs = space.sample_boundary(n, method, subseed(seed, 0))
            tu = random_pairing(n, method, seeded_rng(seed, 1))
        return self._with_time(xs, self.t0 + torch.from_numpy(tu) * self.duration)

    def sample_initial(self, n: int, method: str = "uniform", seed: int | None = None) -> torch.Tensor:
        """(n, dim) points of the initial slice: space interior samples with t exactly t0."""
        return self._with_time(self.space.sample_interior(n, method, seed), self.t0)

    def sample_face(self, axis: int, side: int, n: int, method: str = "uniform",
                    seed: int | None = None) -> torch.Tensor:
        """For a Box space: (n, dim) points on the face x_axis = lower/upper of a spatial axis,
        other coordinates and t free; paired across ``side`` like :meth:`Box.sample_face`."""
        if not isinstance(self.space, Box):
            raise ValueError(f"sample_face needs a Box space; this TimeDomain's space is a {type(self.space).__name__}")
        if axis == self.space.dim and not isinstance(axis, bool):
            raise ValueError(f"axis {axis} is the time axis; use sample_initial for t = t0")
        _check_face(self.space.dim, axis, side)
        return self._space_time_box().sample_face(axis, side, n, method, seed)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """The space's outward normal, 0 in the time column (lateral boundary points only)."""
        xs, t = self._split(x)
        late = ~self._in_time(t, 1e-6)
        if late.any():
            k = int(torch.nonzero(late)[0, 0])
            raise ValueError(f"normal() needs lateral boundary points; point {k} has t={float(t[k])} "
                             f"outside [{self.t0}, {self.t1}]")
        return self._with_time(self.space.normal(xs), 0.0)


