"""Tests for balls, polygons, set operations (CSG) and space-time domains in kanpde.geometry."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from kanpde import Ball, Box, Difference, Disk, Domain, Intersection, Interval, Polygon, TimeDomain, Union
from kanpde.geometry import SAMPLERS

L_VERTICES = [(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]
L_SHAPE = Polygon(L_VERTICES)
DISK = Disk([1.0, -0.5], 0.75)
BALL3 = Ball([0.0, 1.0, -1.0], 2.0)
SQUARE = Box([0.0, 0.0], [2.0, 2.0])
HOLE = Disk([1.0, 1.0], 0.5)
HOLED = SQUARE - HOLE  # area 4 - pi/4
D1, D2 = Disk([0.0, 0.0], 1.0), Disk([1.0, 0.0], 1.0)
LENS_AREA = 2 * math.acos(0.5) - 0.5 * math.sqrt(3)  # two unit disks, centres 1 apart
TWO_DISKS = D1 | D2
LENS = D1 & D2
L_BOXES = Box([0.0, 0.0], [2.0, 1.0]) | Box([0.0, 0.0], [1.0, 2.0])  # the L-shape again, with shared edges
NESTED = (Box([-1.0, -1.0], [1.0, 1.0]) - Disk([0.0, 0.0], 0.5)) | Disk([1.0, 1.0], 0.5)
SPACE_TIME = TimeDomain(DISK, 0.5, 2.0)

# name -> (domain, area/volume, boundary measure)
DOMAINS = {
    "disk": (DISK, math.pi * 0.75**2, 2 * math.pi * 0.75),
    "ball3": (BALL3, 4 / 3 * math.pi * 8, 4 * math.pi * 4),
    "ball4": (Ball([0.0, 0.0, 0.0, 0.0], 1.5), math.pi**2 / 2 * 1.5**4, 2 * math.pi**2 * 1.5**3),
    "ball1": (Ball([2.0], 0.5), 1.0, 2.0),
    "L": (L_SHAPE, 3.0, 8.0),
    "holed": (HOLED, 4 - math.pi / 4, 8 + math.pi),
    "two_disks": (TWO_DISKS, 2 * math.pi - LENS_AREA, 2 * (2 * math.pi - 2 * math.pi / 3)),
    "lens": (LENS, LENS_AREA, 2 * 2 * math.pi / 3),
    "L_boxes": (L_BOXES, 3.0, 8.0),
    # box minus the centre hole, plus the three quarters of the corner disk outside the box
    "nested": (NESTED, 4 - math.pi / 4 + 3 * math.pi / 16, 8 - 1 + math.pi + 0.75 * math.pi),
    "space_time_disk": (SPACE_TIME, math.pi * 0.75**2 * 1.5, 2 * math.pi * 0.75 * 1.5),
    "space_time_L": (TimeDomain(L_SHAPE, 0.0, 1.0), 3.0, 8.0),
    "space_time_holed": (TimeDomain(HOLED, -1.0, 1.0), 2 * (4 - math.pi / 4), 2 * (8 + math.pi)),
}


def _spread_ok(x, domain):
    """Points cover the bounding box in every coordinate, not collapsed on one value."""
    lo, hi = domain.bounds()
    return bool((x.std(dim=0) > 0.15 * (hi - lo)).all())


@pytest.mark.parametrize("name", DOMAINS)
def test_measures(name):
    domain, volume, boundary = DOMAINS[name]
    assert domain.measure() == pytest.approx(volume, rel=2e-3)
    assert domain.boundary_measure() == pytest.approx(boundary, rel=2e-3)


def test_exact_measures():
    assert DISK.measure() == math.pi * 0.75**2 and L_SHAPE.measure() == 3.0 and L_SHAPE.boundary_measure() == 8.0
    assert Polygon(L_VERTICES[::-1]).measure() == 3.0
    assert Box([0, 0, 0], [1, 2, 3]).measure() == 6.0 and Box([0, 0, 0], [1, 2, 3]).boundary_measure() == 22.0
    assert Interval(0, 2).boundary_measure() == 2.0


@pytest.mark.parametrize("name", DOMAINS)
@pytest.mark.parametrize("method", SAMPLERS)
def test_interior_samples_inside_and_spread(name, method):
    domain = DOMAINS[name][0]
    x = domain.sample_interior(400, method, seed=3)
    assert x.shape == (400, domain.dim) and x.dtype == torch.float64 and x.device.type == "cpu"
    assert domain.inside(x).all()
    assert _spread_ok(x, domain)


@pytest.mark.parametrize("name", DOMAINS)
@pytest.mark.parametrize("method", SAMPLERS)
def test_boundary_samples_on_boundary(name, method):
    domain = DOMAINS[name][0]
    x = domain.sample_boundary(301, method, seed=5)
    assert x.shape == (301, domain.dim) and x.dtype == torch.float64
    assert domain.on_boundary(x).all()
    assert domain.inside(x).all()
    if domain.dim > 1:
        assert _spread_ok(x, domain)


@pytest.mark.parametrize("name", DOMAINS)
def test_interior_is_uniform(name):
    """The fraction of interior samples in a test region matches its share of the volume."""
    domain, volume, _ = DOMAINS[name]
    x = domain.sample_interior(20000, "uniform", seed=1)
    lo, hi = domain.bounds()
    mid = (lo + hi) / 2
    region = x[:, 0] < mid[0]  # left half of the bounding box
    # that half's volume, by brute-force Monte Carlo on inside() (an independent check of inside too)
    g = torch.from_numpy(np.random.default_rng(9).random((200000, domain.dim)))
    y = lo + g * (hi - lo)
    ins = domain.inside(y)
    box_volume = float((hi - lo).prod())
    assert float(ins.double().mean()) * box_volume == pytest.approx(volume, rel=0.02)
    share = float((ins & (y[:, 0] < mid[0])).double().sum() / ins.double().sum())
    assert float(region.double().mean()) == pytest.approx(share, abs=0.015)


def test_disk_and_ball_radial_and_angular_distribution():
    x = DISK.sample_interior(4000, "uniform", seed=0) - DISK.center
    assert stats.kstest((x.norm(dim=1) / 0.75).square().numpy(), "uniform").pvalue > 0.01  # r^2 uniform
    b = DISK.sample_boundary(4000, "uniform", seed=0) - DISK.center
    angle = (torch.atan2(b[:, 1], b[:, 0]) + math.pi) / (2 * math.pi)
    assert stats.kstest(angle.numpy(), "uniform").pvalue > 0.01
    assert torch.allclose(b.norm(dim=1), torch.full((4000,), 0.75, dtype=torch.float64))
    # QMC boundary angles are much more even than random ones
    bq = DISK.sample_boundary(4000, "sobol", seed=0) - DISK.center
    aq = (torch.atan2(bq[:, 1], bq[:, 0]) + math.pi) / (2 * math.pi)
    assert stats.kstest(aq.numpy(), "uniform").statistic < 0.002
    # 3-D: |x - c|^3 uniform; on the sphere each coordinate is uniform (Archimedes)
    y = BALL3.sample_interior(4000, "uniform", seed=1) - BALL3.center
    assert stats.kstest((y.norm(dim=1) / 2.0).pow(3).numpy(), "uniform").pvalue > 0.01
    s = BALL3.sample_boundary(4000, "uniform", seed=1) - BALL3.center
    for i in range(3):
        assert stats.kstest(((s[:, i] + 2.0) / 4.0).numpy(), "uniform").pvalue > 0.01
    # 4-D (Gaussian directions): |x|^4 uniform, and inside
    ball4 = DOMAINS["ball4"][0]
    z = ball4.sample_interior(4000, "sobol", seed=2)
    assert stats.kstest((z.norm(dim=1) / 1.5).pow(4).numpy(), "uniform").pvalue > 0.01


def _edge_of(x, vertices):
    """(n,) index of the polygon edge each boundary point lies on (-1 if none)."""
    v = torch.tensor(vertices, dtype=torch.float64)
    w = torch.roll(v, -1, dims=0)
    out = torch.full((x.shape[0],), -1)
    for k in range(len(v)):
        e = w[k] - v[k]
        cross = e[0] * (x[:, 1] - v[k, 1]) - e[1] * (x[:, 0] - v[k, 0])
        t = ((x - v[k]) * e).sum(dim=1) / (e * e).sum()
        out[(cross.abs() < 1e-12) & (t >= 0) & (t <= 1) & (out < 0)] = k
    return out


@pytest.mark.parametrize("domain", [L_SHAPE, L_BOXES], ids=["polygon", "union_of_boxes"])
def test_l_shape_boundary_spread_by_edge_length(domain):
    x = domain.sample_boundary(8000, "uniform", seed=2)
    edges = _edge_of(x, L_VERTICES)
    assert (edges >= 0).all()
    lengths = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    frac = torch.bincount(edges, minlength=6).double() / 8000
    assert torch.allclose(frac, lengths.double() / 8, atol=0.015)
    # QMC along the perimeter: every edge gets its share almost exactly
    xs = L_SHAPE.sample_boundary(800, "sobol", seed=2)
    assert torch.bincount(_edge_of(xs, L_VERTICES), minlength=6).tolist() == pytest.approx(
        [200, 100, 100, 100, 100, 200], abs=2)


NORMAL_CASES = {k: DOMAINS[k][0] for k in
                ["disk", "ball3", "ball4", "L", "holed", "two_disks", "lens", "L_boxes", "nested",
                 "space_time_disk", "space_time_L", "space_time_holed"]}
NORMAL_CASES["space_time_box"] = TimeDomain(Box([0.0, -1.0], [1.0, 1.0]), 0.0, 3.0)
NORMAL_CASES["touching_boxes"] = Box([0.0, 0.0], [1.0, 1.0]) | Box([1.0, 0.0], [2.0, 1.0])
NORMAL_CASES["difference_shared_face"] = Box([0.0, 0.0], [2.0, 1.0]) - Box([1.0, 0.0], [2.0, 1.0])


@pytest.mark.parametrize("name", NORMAL_CASES)
def test_normals_unit_and_outward(name):
    domain = NORMAL_CASES[name]
    x = domain.sample_boundary(500, "uniform", seed=11)
    nrm = domain.normal(x)
    assert nrm.shape == x.shape and nrm.dtype == torch.float64
    assert torch.allclose(nrm.norm(dim=1), torch.ones(500, dtype=torch.float64))
    eps = 1e-6 * domain._scale()
    assert not domain.inside(x + eps * nrm).any()
    assert domain.inside(x - eps * nrm).all()
    if isinstance(domain, TimeDomain):
        assert (nrm[:, -1] == 0).all()


def test_coincident_boundaries_counted_once():
    # touching boxes: the shared face x = 1 is interior to the union, so no boundary point lies there
    touching = NORMAL_CASES["touching_boxes"]
    x = touching.sample_boundary(2000, "uniform", seed=0)
    assert not ((x[:, 0] - 1).abs() < 1e-12).any()
    assert touching.boundary_measure() == pytest.approx(6.0, rel=1e-3)
    assert not touching.on_boundary(torch.tensor([[1.0, 0.5]], dtype=torch.float64)).any()
    with pytest.raises(ValueError, match="point 0 is not on the boundary"):
        touching.normal(torch.tensor([[1.0, 0.5]], dtype=torch.float64))
    # difference sharing a face: the removed half's faces are gone, the cut x = 1 faces left
    cut = NORMAL_CASES["difference_shared_face"]
    y = cut.sample_boundary(2000, "uniform", seed=0)
    assert (y[:, 0] <= 1 + 1e-12).all()
    assert cut.boundary_measure() == pytest.approx(4.0, rel=1e-3)
    on_cut = (y[:, 0] - 1).abs() < 1e-12
    assert on_cut.any()
    assert (cut.normal(y[on_cut]) == torch.tensor([1.0, 0.0], dtype=torch.float64)).all()
    # union of boxes with shared edge y = 0: points there have normal (0, -1), at the same density as elsewhere
    z = L_BOXES.sample_boundary(4000, "sobol", seed=1)
    bottom = z[:, 1] == 0
    assert float(bottom.double().mean()) == pytest.approx(2 / 8, abs=0.01)
    assert (L_BOXES.normal(z[bottom]) == torch.tensor([0.0, -1.0], dtype=torch.float64)).all()


def test_difference_hole_normals_point_to_hole_centre():
    x = HOLED.sample_boundary(3000, "uniform", seed=4)
    nrm = HOLED.normal(x)
    on_hole = ((x - HOLE.center).norm(dim=1) - 0.5).abs() < 1e-9
    assert float(on_hole.double().mean()) == pytest.approx(math.pi / (8 + math.pi), abs=0.02)
    to_centre = (HOLE.center - x[on_hole]) / 0.5
    assert torch.allclose(nrm[on_hole], to_centre, atol=1e-9)
    # no point strictly inside the hole, and the box part is the square's boundary
    assert not ((x - HOLE.center).norm(dim=1) < 0.5 - 1e-9).any()
    assert SQUARE.on_boundary(x[~on_hole]).all()
    # the interior has no point in the hole
    xi = HOLED.sample_interior(3000, "sobol", seed=4)
    assert ((xi - HOLE.center).norm(dim=1) >= 0.5 - 1e-12).all()


def test_union_boundary_excludes_inner_arcs():
    x = TWO_DISKS.sample_boundary(3000, "sobol", seed=0)
    # no boundary point lies strictly inside either disk
    assert ((x - D1.center).norm(dim=1) >= 1 - 1e-9).all() and ((x - D2.center).norm(dim=1) >= 1 - 1e-9).all()
    # each disk keeps 2/3 of its circle: half of the points come from each
    from_d1 = ((x - D1.center).norm(dim=1) - 1).abs() < 1e-9
    assert float(from_d1.double().mean()) == pytest.approx(0.5, abs=0.01)
    # the lens is bounded by the inner arcs
    y = LENS.sample_boundary(1000, "sobol", seed=0)
    assert ((y - D1.center).norm(dim=1) <= 1 + 1e-9).all() and ((y - D2.center).norm(dim=1) <= 1 + 1e-9).all()


def test_csg_inside_set_logic():
    pts = torch.tensor([[-0.5, 0.0], [0.5, 0.0], [1.5, 0.0], [3.0, 0.0], [0.5, 0.0 + math.sqrt(3) / 2]],
                       dtype=torch.float64)  # only in D1, both, only in D2, neither, a crossing point
    assert TWO_DISKS.inside(pts).tolist() == [True, True, True, False, True]
    assert LENS.inside(pts).tolist() == [False, True, False, False, True]
    assert (D1 - D2).inside(pts).tolist() == [True, False, False, False, True]
    assert (D2 - D1).inside(pts).tolist() == [False, False, True, False, True]
    hole_edge = torch.tensor([[1.5, 1.0], [1.0, 1.0], [0.1, 0.1]], dtype=torch.float64)
    assert HOLED.inside(hole_edge).tolist() == [True, False, True]  # the hole's rim belongs to the domain
    assert HOLED.on_boundary(hole_edge).tolist() == [True, False, False]


def test_operators_and_bounds():
    a, b = Box([0.0, 0.0], [2.0, 1.0]), Disk([2.0, 1.0], 1.0)
    assert isinstance(a | b, Union) and isinstance(a - b, Difference) and isinstance(a & b, Intersection)
    assert all(isinstance(d, Domain) for d in (a | b, a - b, a & b))
    assert [t.tolist() for t in (a | b).bounds()] == [[0.0, 0.0], [3.0, 2.0]]
    assert [t.tolist() for t in (a & b).bounds()] == [[1.0, 0.0], [2.0, 1.0]]
    assert [t.tolist() for t in (a - b).bounds()] == [[0.0, 0.0], [2.0, 1.0]]
    assert repr(a - b) == "Difference(Box(lower=[0.0, 0.0], upper=[2.0, 1.0]), Disk(center=[2.0, 1.0], radius=1.0))"
    with pytest.raises(ValueError, match=r"same dimension.*a.dim=2 and b.dim=3"):
        a | BALL3
    with pytest.raises(TypeError):
        a | 3
    with pytest.raises(TypeError, match="b is a str"):
        Union(a, "disk")
    with pytest.raises(ValueError, match="empty"):
        Intersection(a, Disk([10.0, 10.0], 1.0))


def test_polygon_validation():
    with pytest.raises(ValueError, match=r"not simple: edge 0 \(\(0\.0, 0\.0\) -> \(1\.0, 1\.0\)\) crosses or touches "
                                         r"edge 2 \(\(1\.0, 0\.0\) -> \(0\.0, 1\.0\)\)"):
        Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])  # bow-tie
    with pytest.raises(ValueError, match="at least 3 vertices; got 2"):
        Polygon([(0, 0), (1, 1)])
    with pytest.raises(ValueError, match="at least 3 distinct vertices"):
        Polygon([(0, 0), (1, 1), (0, 0), (1, 1)])
    with pytest.raises(ValueError, match=r"edge 3 \(vertex 3 -> vertex 0\) has zero length"):
        Polygon([(0, 0), (1, 0), (1, 1), (0, 0)])  # closing vertex repeated
    with pytest.raises(ValueError, match=r"vertex 1=\(nan, 0.0\) must be finite"):
        Polygon([(0, 0), (float("nan"), 0), (1, 1)])
    with pytest.raises(ValueError, match="pairs"):
        Polygon([(0, 0, 0), (1, 0, 0), (1, 1, 0)])
    with pytest.raises(ValueError, match="folds back"):
        Polygon([(0, 0), (1, 0), (2, 0)])  # collinear: zero area
    with pytest.raises(ValueError, match=r"edge 0 .* touches edge 2 \(\(2\.0, 2\.0\) -> \(1\.0, 0\.0\)\)"):
        Polygon([(0, 0), (2, 0), (2, 2), (1, 0), (0, 2)])  # vertex (1, 0) touches edge 0
    Polygon([(0, 0), (1, 0), (2, 0), (2, 1)])  # a redundant vertex on a straight edge is fine


def test_polygon_orientation_and_known_points():
    cw = Polygon(L_VERTICES[::-1])
    assert torch.equal(cw.vertices, torch.tensor(L_VERTICES[::-1], dtype=torch.float64).flip(0))
    pts = torch.tensor([[0.5, 0.5], [1.5, 1.5], [1.0, 1.5], [2.0, 0.5], [1.5, 1.0], [-0.1, 0.5], [0.5, 1.9]],
                       dtype=torch.float64)
    for poly in (L_SHAPE, cw):
        assert poly.inside(pts).tolist() == [True, False, True, True, True, False, True]
        assert poly.on_boundary(pts).tolist() == [False, False, True, True, True, False, False]
        nrm = poly.normal(pts[2:5])
        assert nrm.tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    # at a vertex the normal is that of the edge starting there (counter-clockwise order), every time
    corner = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    assert L_SHAPE.normal(corner).tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]]
    assert cw.normal(corner).tolist() == [[1.0, 0.0], [1.0, 0.0], [0.0, -1.0]]
    with pytest.raises(ValueError, match="point 0 is 0.5 away"):
        L_SHAPE.normal(torch.tensor([[0.5, 0.5]], dtype=torch.float64))


def test_rejection_refuses_hopeless_domains():
    sliver = Polygon([(0, 0), (1, 1), (1, 1 + 1e-5), (0, 1e-5)])  # fills 1e-5 of its bounding box
    assert sliver.sample_boundary(10, seed=0).shape == (10, 2)
    with pytest.raises(ValueError, match=r"Polygon.sample_interior: the domain fills only 1e-05 of its bounding box"):
        sliver.sample_interior(10, seed=0)
    thin = Polygon([(0, 0), (1, 1), (1, 1.01), (0, 0.01)])  # 1% of its box: slow but fine
    assert thin.inside(thin.sample_interior(50, "sobol", seed=0)).all()


@pytest.mark.parametrize("name", DOMAINS)
@pytest.mark.parametrize("method", SAMPLERS)
def test_seeds_reproducible_and_distinct(name, method):
    domain = DOMAINS[name][0]
    samplers = [domain.sample_interior, domain.sample_boundary]
    if isinstance(domain, TimeDomain):
        samplers.append(domain.sample_initial)
    for sample in samplers:
        a, b, c = sample(64, method, seed=7), sample(64, method, seed=7), sample(64, method, seed=8)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["disk", "L", "holed", "space_time_disk"])
def test_bad_arguments_rejected(name):
    domain = DOMAINS[name][0]
    for sample in (domain.sample_interior, domain.sample_boundary):
        with pytest.raises(ValueError, match=r"\bn\b"):
            sample(0)
        with pytest.raises(ValueError, match=r"method.*sobol"):
            sample(10, method="grid")
    with pytest.raises(ValueError, match=r"shape \(n, "):
        domain.inside(torch.zeros(3, domain.dim + 1, dtype=torch.float64))


def test_ball_validation():
    with pytest.raises(ValueError, match="radius"):
        Disk([0.0, 0.0], -1.0)
    with pytest.raises(ValueError, match="radius"):
        Ball([0.0], float("inf"))
    with pytest.raises(ValueError, match=r"center\[1\]=nan"):
        Ball([0.0, float("nan")], 1.0)
    with pytest.raises(ValueError, match="2-D center; got 3"):
        Disk([0.0, 0.0, 0.0], 1.0)
    assert repr(DISK) == "Disk(center=[1.0, -0.5], radius=0.75)" and isinstance(DISK, Ball) and DISK.dim == 2


def test_ball_normals_and_boundary_predicates():
    x = torch.tensor([[1.75, -0.5], [1.0, 0.25], [1.0, -0.5], [1.75 + 1e-3, -0.5]], dtype=torch.float64)
    assert DISK.inside(x).tolist() == [True, True, True, False]
    assert DISK.on_boundary(x).tolist() == [True, True, False, False]
    assert DISK.on_boundary(x, tol=1e-3).tolist() == [True, True, False, True]
    assert DISK.normal(x[:2]).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="point 2 is 0.75 away"):
        DISK.normal(x)


# -- distance functions -------------------------------------------------------------------------

@pytest.mark.parametrize("domain", [Box([0.0, -1.0, 2.0], [1.0, 1.0, 5.0]), Interval(-1.0, 3.0), DISK, BALL3,
                                    LENS, SPACE_TIME, TimeDomain(Box([0.0, 0.0], [2.0, 1.0]), 0.0, 1.0)],
                         ids=["box", "interval", "disk", "ball3", "lens", "space_time_disk", "space_time_box"])
def test_distance_vanishes_on_boundary_positive_inside(domain):
    xb = domain.sample_boundary(500, "sobol", seed=0)
    assert domain.distance(xb).abs().max() < 1e-12
    xi = domain.sample_interior(500, "sobol", seed=0)
    assert (domain.distance(xi) > 0).all()
    assert domain.distance(xi).shape == (500,)


def test_distance_keeps_dtype_and_is_differentiable():
    x = torch.tensor([[1.25, -0.5, 0.5], [1.0, 0.0, 1.5]], dtype=torch.float32, requires_grad=True)
    d = SPACE_TIME.distance(x)
    assert d.dtype == torch.float32
    (g,) = torch.autograd.grad(d.sum(), x)
    expected = torch.stack([-2 * (x[:, 0] - 1.0), -2 * (x[:, 1] + 0.5), torch.zeros(2)], dim=1) / 0.75**2
    assert torch.allclose(g, expected.detach())
    tb = TimeDomain(Box([0.0, 0.0], [2.0, 1.0]), 0.0, 1.0)
    y = torch.tensor([[0.5, 0.5, 0.25]], dtype=torch.float32, requires_grad=True)
    (gb,) = torch.autograd.grad(tb.distance(y).sum(), y)
    assert torch.allclose(gb, torch.tensor([[1.0, 0.0, 0.0]]))  # x(2 - x) * 4y(1 - y): d/dx = 2 - 2x at y = 1/2
    assert tb.time_distance(y).dtype == torch.float32 and tb.time_distance(y).item() == 0.25
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        tb.distance(torch.zeros(2, 2))


def test_distance_values_and_missing():
    box = Box([0.0, -1.0], [2.0, 1.0])
    assert box.distance(torch.tensor([[1.0, 0.0], [0.5, 0.0]], dtype=torch.float64)).tolist() == [1.0, 0.75]
    assert DISK.distance(DISK.center[None]).tolist() == [1.0]
    with pytest.raises(NotImplementedError, match="Polygon"):
        L_SHAPE.distance(torch.zeros(1, 2, dtype=torch.float64))
    with pytest.raises(NotImplementedError, match="Union"):
        TWO_DISKS.distance(torch.zeros(1, 2, dtype=torch.float64))


# -- space-time ---------------------------------------------------------------------------------

@pytest.mark.parametrize("space", [DISK, Interval(-1.0, 1.0), Box([0.0, 0.0], [1.0, 2.0]), L_SHAPE, HOLED],
                         ids=["disk", "interval", "box", "L", "holed"])
@pytest.mark.parametrize("method", SAMPLERS)
def test_time_domain_samples(space, method):
    td = TimeDomain(space, 0.5, 2.0)
    assert td.dim == space.dim + 1
    x0 = td.sample_initial(200, method, seed=1)
    assert x0.shape == (200, td.dim) and (x0[:, -1] == 0.5).all() and space.inside(x0[:, :-1]).all()
    assert td.on_initial(x0).all() and td.inside(x0).all()
    assert (td.time_distance(x0) == 0).all()
    xl = td.sample_boundary(200, method, seed=2)
    assert space.on_boundary(xl[:, :-1]).all() and td.on_boundary(xl).all()
    assert ((xl[:, -1] >= 0.5) & (xl[:, -1] <= 2.0)).all() and xl[:, -1].std() > 0.3
    assert not td.on_initial(xl).any()
    xi = td.sample_interior(200, method, seed=3)
    assert td.inside(xi).all() and ((xi[:, -1] >= 0.5) & (xi[:, -1] <= 2.0)).all() and xi[:, -1].std() > 0.3
    assert not td.on_initial(xi).any()


@pytest.mark.parametrize("domain", [SPACE_TIME, TimeDomain(HOLED, 0.0, 1.0), TimeDomain(L_SHAPE, 0.0, 1.0)],
                         ids=["disk", "holed", "L"])
def test_time_domain_lateral_qmc_is_not_degenerate(domain):
    """(boundary position, time) pairs fill the plane; pairing two separately scrambled Sobol
    sequences index by index would put them on a curve (16 of 256 cells)."""
    x = domain.sample_boundary(256, "sobol", seed=0)
    if isinstance(domain.space, Disk):
        s = (torch.atan2(x[:, 1] - DISK.center[1], x[:, 0] - DISK.center[0]) + math.pi) / (2 * math.pi)
    else:
        s = (x[:, 0] - x[:, 0].min()) / (x[:, 0].max() - x[:, 0].min() + 1e-12)
    t = (x[:, -1] - domain.t0) / domain.duration
    cells = set(zip((s * 16).long().tolist(), (t * 16).long().tolist()))
    assert len(cells) > 120


def test_time_domain_predicates_bounds_normals():
    td = TimeDomain(Box([0.0, -1.0], [1.0, 1.0]), 0.0, 3.0)
    lo, hi = td.bounds()
    assert lo.tolist() == [0.0, -1.0, 0.0] and hi.tolist() == [1.0, 1.0, 3.0]
    x = torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.5, 0.0], [0.5, 0.5, 1.0], [1.0, 0.0, 3.5], [0.5, 1.0, 3.0]],
                     dtype=torch.float64)
    assert td.inside(x).tolist() == [True, True, True, False, True]
    assert td.on_boundary(x).tolist() == [True, False, False, False, True]
    assert td.on_initial(x).tolist() == [False, True, False, False, False]
    assert td.normal(x[[0, 4]]).tolist() == [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    with pytest.raises(ValueError, match="t=3.5 outside"):
        td.normal(x[[3]])
    with pytest.raises(ValueError, match="point 0 is 0.5 away"):
        td.normal(x[[1]])
    assert td.time_distance(x).tolist() == [1 / 3, 0.0, 1 / 3, 3.5 / 3, 1.0]
    assert repr(td) == "TimeDomain(Box(lower=[0.0, -1.0], upper=[1.0, 1.0]), t0=0.0, t1=3.0)"
    # lateral boundary samples are split over the spatial faces by measure, with times spread
    xl = td.sample_boundary(400, "sobol", seed=0)
    assert int((xl[:, 0] == 0).sum()) == 133 and int((xl[:, 1] == 1).sum()) == 67  # face lengths 2, 2, 1, 1
    with pytest.raises(ValueError, match="t0 < t1"):
        TimeDomain(DISK, 1.0, 1.0)
    with pytest.raises(ValueError, match="t1=inf"):
        TimeDomain(DISK, 0.0, float("inf"))
    with pytest.raises(TypeError, match="space must be a Domain"):
        TimeDomain([0, 1], 0.0, 1.0)


# -- faces, grids -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", SAMPLERS)
def test_box_sample_face(method):
    box = Box([0.0, -1.0, 2.0], [1.0, 1.0, 5.0])
    lo = box.sample_face(1, 0, 100, method, seed=3)
    hi = box.sample_face(1, 1, 100, method, seed=3)
    assert (lo[:, 1] == -1.0).all() and (hi[:, 1] == 1.0).all() and box.on_boundary(lo).all()
    assert torch.equal(lo[:, [0, 2]], hi[:, [0, 2]])  # paired points for periodic conditions
    assert lo[:, 0].std() > 0.2 and lo[:, 2].std() > 0.6
    assert not torch.equal(lo, box.sample_face(1, 0, 100, method, seed=4))
    assert torch.equal(box.normal(hi), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(100, 3))
    for bad, match in [((3, 0), "axis must be an integer in 0..2; got 3"), ((0, 2), "side must be 0"),
                       ((True, 0), "axis"), ((0, False), "side")]:
        with pytest.raises(ValueError, match=match):
            box.sample_face(*bad, 10)
    assert Interval(0.0, 2.0).sample_face(0, 1, 3).tolist() == [[2.0], [2.0], [2.0]]


def test_time_domain_sample_face():
    td = TimeDomain(Box([0.0, 0.0], [1.0, 2.0]), 0.0, 3.0)
    lo, hi = td.sample_face(0, 0, 50, "sobol", seed=1), td.sample_face(0, 1, 50, "sobol", seed=1)
    assert (lo[:, 0] == 0).all() and (hi[:, 0] == 1).all() and torch.equal(lo[:, 1:], hi[:, 1:])
    assert lo[:, 2].min() < 0.5 and lo[:, 2].max() > 2.5 and td.on_boundary(lo).all()
    with pytest.raises(ValueError, match="time axis"):
        td.sample_face(2, 0, 10)
    with pytest.raises(ValueError, match="needs a Box space"):
        SPACE_TIME.sample_face(0, 0, 10)


def test_grids_keep_inside_points_only():
    g = DISK.grid(41)
    assert DISK.inside(g).all()
    assert g.shape[0] == pytest.approx(41**2 * math.pi / 4, rel=0.05)
    gl = L_SHAPE.grid(21)
    assert L_SHAPE.inside(gl).all() and gl.shape[0] == 21**2 - 10**2  # the open square (1, 2]^2 is left out
    gh = HOLED.grid(21)
    assert HOLED.inside(gh).all() and not ((gh - HOLE.center).norm(dim=1) < 0.5 - 1e-9).any()
    gt = TimeDomain(Box([0.0, 0.0], [1.0, 2.0]), 0.0, 1.0).grid(5)
    assert gt.shape == (125, 3) and gt[-1].tolist() == [1.0, 2.0, 1.0]
    gd = SPACE_TIME.grid(9)
    assert SPACE_TIME.inside(gd).all() and gd.shape[0] == DISK.grid(9).shape[0] * 9


def test_one_dimensional_csg():
    d = Interval(0.0, 2.0) - Interval(0.5, 1.0)
    x = d.sample_boundary(40, seed=0)
    assert set(x[:, 0].tolist()) == {0.0, 0.5, 1.0, 2.0}
    nrm = d.normal(x)[:, 0]
    expected = {0.0: -1.0, 0.5: 1.0, 1.0: -1.0, 2.0: 1.0}
    assert nrm.tolist() == [expected[v] for v in x[:, 0].tolist()]
    assert d.boundary_measure() == pytest.approx(4.0) and d.measure() == pytest.approx(1.5)
    xi = d.sample_interior(200, "sobol", seed=0)
    assert not ((xi[:, 0] > 0.5) & (xi[:, 0] < 1.0)).any()


class _Ring(Domain):
    """A domain that defines only the abstract methods: it gets the base rejection sampler and measure."""

    dim = 2

    def bounds(self):
        return torch.tensor([-2.0, -2.0], dtype=torch.float64), torch.tensor([2.0, 2.0], dtype=torch.float64)

    def inside(self, x):
        r = self._as_points(x).norm(dim=1)
        return (r >= 1 - 1e-12) & (r <= 2 + 1e-12)

    def on_boundary(self, x, tol=1e-9):
        r = self._as_points(x).norm(dim=1)
        return ((r - 1).abs() <= 4 * tol) | ((r - 2).abs() <= 4 * tol)

    def sample_boundary(self, n, method="uniform", seed=None):
        raise NotImplementedError

    def normal(self, x):
        raise NotImplementedError


def test_base_class_defaults():
    ring = _Ring()
    assert ring.measure() == pytest.approx(3 * math.pi, rel=1e-3)
    x = ring.sample_interior(1000, "halton", seed=0)
    assert ring.inside(x).all() and x.shape == (1000, 2)
    assert float((x.norm(dim=1) < 1.5).double().mean()) == pytest.approx(1.25 / 3, abs=0.03)
    g = ring.grid(21)
    assert ring.inside(g).all() and g.shape[0] < 21**2
    with pytest.raises(NotImplementedError, match="_Ring does not define boundary_measure"):
        ring.boundary_measure()
    with pytest.raises(NotImplementedError, match="_Ring has no distance"):
        ring.distance(x)
