"""Tests for kanpde.geometry: boxes, intervals, sampling, normals, grids."""
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from kanpde.geometry import SAMPLERS, Box, Domain, Interval

BOXES = {
    1: Box([-1.0], [2.0]),
    2: Box([0.0, -1.0], [3.0, 1.0]),
    3: Box([0.0, 0.0, -2.0], [1.0, 2.0, 0.5]),
}


def _at_bound(box, x):
    """(n, dim) bool: coordinate exactly at lower or upper."""
    return (x == box.lower) | (x == box.upper)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("method", SAMPLERS)
def test_interior_samples_within_bounds(dim, method):
    box = BOXES[dim]
    x = box.sample_interior(300, method=method, seed=0)
    assert x.shape == (300, dim) and x.dtype == torch.float64 and x.device.type == "cpu"
    assert ((x >= box.lower) & (x <= box.upper)).all()
    assert box.inside(x).all()
    # points are spread out, not collapsed on one value
    assert (x.std(dim=0) > 0.2 * box.extent).all()


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("method", SAMPLERS)
def test_boundary_samples_on_boundary(dim, method):
    box = BOXES[dim]
    x = box.sample_boundary(301, method=method, seed=3)
    assert x.shape == (301, dim) and x.dtype == torch.float64
    assert box.on_boundary(x).all()
    assert box.inside(x).all()
    n_at_bound = _at_bound(box, x).sum(dim=1)
    assert (n_at_bound >= 1).all()
    if dim > 1:  # random free coordinates never hit a bound exactly, so no corners appear
        assert (n_at_bound == 1).all()


def test_face_counts_proportional_to_measure():
    box = Box([0.0, 0.0], [3.0, 1.0])
    x = box.sample_boundary(800, method="sobol", seed=1)
    counts = {
        "x=0": int((x[:, 0] == 0.0).sum()), "x=3": int((x[:, 0] == 3.0).sum()),
        "y=0": int((x[:, 1] == 0.0).sum()), "y=1": int((x[:, 1] == 1.0).sum()),
    }
    assert counts == {"x=0": 100, "x=3": 100, "y=0": 300, "y=1": 300}
    assert box.face_counts(800) == [100, 100, 300, 300]


@pytest.mark.parametrize("n", [1, 2, 5, 7, 13, 999])
def test_face_counts_sum_to_n(n):
    for box in BOXES.values():
        counts = box.face_counts(n)
        assert sum(counts) == n and len(counts) == 2 * box.dim
        assert box.sample_boundary(n, seed=0).shape == (n, box.dim)


def test_face_counts_3d_largest_remainder():
    box = BOXES[3]  # extents 1, 2, 2.5 -> face measures 5, 5, 2.5, 2.5, 2, 2 (total 19)
    counts = box.face_counts(19 * 10 + 1)
    assert counts[:2] == [51, 50] and counts[2:4] == [25, 25] and counts[4:] == [20, 20]


def test_interval_boundary_exact_endpoints():
    iv = Interval(-0.5, 2.0)
    x = iv.sample_boundary(5, seed=0)
    assert x.shape == (5, 1)
    assert x[:, 0].tolist() == [-0.5, -0.5, -0.5, 2.0, 2.0]
    assert iv.sample_boundary(4, method="halton")[:, 0].tolist() == [-0.5, -0.5, 2.0, 2.0]
    assert iv.normal(x)[:, 0].tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]


@pytest.mark.parametrize("method", SAMPLERS)
def test_seeds_reproducible_and_distinct(method):
    box = BOXES[2]
    for sample in (box.sample_interior, box.sample_boundary):
        a, b, c = sample(64, method, seed=7), sample(64, method, seed=7), sample(64, method, seed=8)
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


def test_no_sobol_warning_for_non_power_of_two():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BOXES[2].sample_interior(100, "sobol", seed=0)
        BOXES[3].sample_boundary(100, "sobol", seed=0)
        BOXES[2].sample_interior(10, "lhs", seed=0)
        BOXES[2].sample_interior(10, "halton", seed=0)


@pytest.mark.parametrize("method", ["sobol", "halton"])
def test_qmc_lower_discrepancy_than_uniform(method):
    box = Box([0.0, 0.0], [1.0, 1.0])
    for seed in range(3):
        d_qmc = qmc.discrepancy(box.sample_interior(256, method, seed=seed).numpy())
        d_uni = qmc.discrepancy(box.sample_interior(256, "uniform", seed=seed).numpy())
        assert d_qmc < 0.5 * d_uni


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_normals_unit_and_outward(dim):
    box = BOXES[dim]
    x = box.sample_boundary(200, seed=4)
    nrm = box.normal(x)
    assert nrm.shape == x.shape
    assert torch.allclose(nrm.norm(dim=1), torch.ones(200, dtype=torch.float64))
    eps = 1e-3
    assert not box.inside(x + eps * nrm).any()
    assert box.inside(x - eps * nrm).all()
    # the normal points along the axis of the coordinate that sits at a bound
    axis = nrm.abs().argmax(dim=1)
    assert _at_bound(box, x)[torch.arange(200), axis].all()


def test_normals_known_points():
    box = Box([-1.0, -1.0], [1.0, 1.0])
    x = torch.tensor([[-1.0, 0.3], [1.0, -0.2], [0.1, -1.0], [0.5, 1.0], [-1.0, -1.0], [1.0 - 1e-9, 0.0]],
                     dtype=torch.float64)
    expected = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]],
                            dtype=torch.float64)
    assert torch.equal(box.normal(x), expected)


def test_normal_rejects_non_boundary_points():
    box = Box([-1.0, -1.0], [1.0, 1.0])
    x = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, 1.0], [0.75, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="point 3 is 0.25 away"):
        box.normal(x)
    with pytest.raises(ValueError, match="point 0"):  # outside, though aligned with a face plane
        box.normal(torch.tensor([[5.0, 1.0]], dtype=torch.float64))


def test_inside_and_on_boundary():
    box = Box([0.0, 0.0], [2.0, 1.0])
    x = torch.tensor([[1.0, 0.5], [0.0, 0.5], [2.0, 1.0], [2.0 + 1e-6, 0.5], [-0.1, 0.5], [1.0, 1e-3]],
                     dtype=torch.float64)
    assert box.inside(x).tolist() == [True, True, True, False, False, True]
    assert box.on_boundary(x).tolist() == [False, True, True, False, False, False]
    assert box.on_boundary(x, tol=1e-2).tolist() == [False, True, True, True, False, True]


def test_grid_shape_order_endpoints():
    box = Box([0.0, -1.0], [2.0, 1.0])
    g = box.grid(3)
    assert g.shape == (9, 2) and g.dtype == torch.float64
    assert g[:3].tolist() == [[0.0, -1.0], [0.0, 0.0], [0.0, 1.0]]  # last coordinate fastest
    assert g[-1].tolist() == [2.0, 1.0]
    assert box.inside(g).all()
    g3 = BOXES[3].grid(4)
    assert g3.shape == (64, 3)
    assert torch.equal(g3.min(dim=0).values, BOXES[3].lower)
    assert torch.equal(g3.max(dim=0).values, BOXES[3].upper)
    assert torch.equal(Interval(0.0, 1.0).grid(5)[:, 0], torch.linspace(0, 1, 5, dtype=torch.float64))


def test_bounds_and_repr():
    box = Box([-1, -1], [1, 1])
    lo, hi = box.bounds()
    assert lo.dtype == torch.float64 and lo.tolist() == [-1.0, -1.0] and hi.tolist() == [1.0, 1.0]
    lo[0] = 5.0  # returned copies do not alias the box
    assert box.bounds()[0].tolist() == [-1.0, -1.0]
    assert repr(box) == "Box(lower=[-1.0, -1.0], upper=[1.0, 1.0])"
    assert isinstance(Interval(0, 1), Box) and isinstance(box, Domain)
    assert Interval(0, 1).dim == 1 and BOXES[3].dim == 3


@pytest.mark.parametrize("lower, upper, match", [
    ([0.0, 0.0], [1.0], "lower and upper must have the same length"),
    ([], [], "lower and upper must have the same length"),
    ([0.0, float("nan")], [1.0, 1.0], r"lower\[1\]"),
    ([0.0, 0.0], [1.0, float("inf")], r"upper\[1\]"),
    ([0.0, 2.0], [1.0, 1.0], r"upper\[1\]=1.0 must be greater than lower\[1\]=2.0"),
    ([0.0, 1.0], [1.0, 1.0], r"upper\[1\]"),
])
def test_box_validation(lower, upper, match):
    with pytest.raises(ValueError, match=match):
        Box(lower, upper)


@pytest.mark.parametrize("a, b", [(1.0, 0.0), (1.0, 1.0), (float("nan"), 1.0), (0.0, float("inf"))])
def test_interval_validation(a, b):
    with pytest.raises(ValueError, match=r"\ba\b.*\bb\b"):
        Interval(a, b)


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10", None])
def test_bad_n_rejected(n):
    box = BOXES[2]
    for sample in (box.sample_interior, box.sample_boundary):
        with pytest.raises(ValueError, match=r"\bn\b"):
            sample(n)


def test_numpy_int_n_accepted():
    assert BOXES[2].sample_interior(np.int64(4), seed=0).shape == (4, 2)


def test_unknown_method_rejected():
    box = BOXES[2]
    for sample in (box.sample_interior, box.sample_boundary):
        with pytest.raises(ValueError, match=r"method.*sobol.*halton.*lhs"):
            sample(10, method="grid")


@pytest.mark.parametrize("n_per_dim", [1, 0, True, 2.0])
def test_bad_n_per_dim_rejected(n_per_dim):
    with pytest.raises(ValueError, match="n_per_dim"):
        BOXES[2].grid(n_per_dim)


@pytest.mark.parametrize("method", SAMPLERS)
def test_faces_use_distinct_streams(method):
    box = Box([0.0, 0.0], [3.0, 1.0])
    x = box.sample_boundary(800, method, seed=5)
    bottom, top = x[x[:, 1] == 0.0, 0], x[x[:, 1] == 1.0, 0]
    assert bottom.shape == top.shape == (300,)
    assert not torch.equal(bottom, top)  # opposite faces are not copies of each other
