"""Tests for kanpde.models.basis: closed-form uniform B-splines against the Cox–de Boor recursion."""
from fractions import Fraction

import pytest
import torch

from kanpde.models.basis import (
    cardinal_pieces,
    cox_de_boor_basis,
    pad_coefficients,
    padded_bspline_basis,
    uniform_bspline_basis,
)

F64 = torch.float64

# Grid range per input: one dyadic (knots exactly representable for G a power of 2) and one not.
RANGES = [(-1.0, 1.0), (-0.3, 1.4)]


def _grid(G):
    lo = torch.tensor([r[0] for r in RANGES], dtype=F64)
    h = torch.tensor([(r[1] - r[0]) / G for r in RANGES], dtype=F64)
    return lo, h


def _knots(lo, h, G, k):
    """Padded knot vector lo + (j - k) h, j = 0..G+2k (G + 2k + 1 knots, G + k basis functions)."""
    return lo + (torch.arange(G + 2 * k + 1, dtype=F64) - k) * h


def _reference(x, lo, h, G, k):
    """(batch, n_in, G+k) basis from the Cox–de Boor recursion, input by input."""
    cols = [cox_de_boor_basis(x[:, i], _knots(lo[i], h[i], G, k), k) for i in range(x.shape[1])]
    return torch.stack(cols, dim=1)


def _points(lo, h, G, k, n, seed):
    """Random points covering the padded grid and beyond it, per input: (n, n_in)."""
    gen = torch.Generator().manual_seed(seed)
    a = lo - (k + 1.5) * h
    b = lo + (G + k + 1.5) * h
    return a + (b - a) * torch.rand(n, lo.numel(), generator=gen, dtype=F64)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("G", [1, 3, 5, 10])
def test_closed_form_matches_cox_de_boor_random_points(k, G):
    lo, h = _grid(G)
    x = _points(lo, h, G, k, 400, seed=10 * k + G)
    B = uniform_bspline_basis(x, lo, h, G, k)
    ref = _reference(x, lo, h, G, k)
    assert B.shape == (400, 2, G + k) and B.dtype == F64
    assert (B - ref).abs().max().item() < 1e-12
    # the sample has points inside the padded grid (non-zero basis) and outside it (all zero)
    inside = ref.sum(-1) > 0
    assert inside.float().mean() > 0.15 and not inside.all()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("G", [2, 5, 7])
def test_closed_form_matches_cox_de_boor_on_knots(k, G):
    lo, h = _grid(G)
    knots = torch.stack([_knots(lo[i], h[i], G, k) for i in range(2)], dim=1)  # (G+2k+1, 2)
    B = uniform_bspline_basis(knots, lo, h, G, k)
    ref = _reference(knots, lo, h, G, k)
    assert (B - ref).abs().max().item() < 1e-12
    # at an interior knot s = j of the cardinal spline the values are the cardinal spline at integers
    M = cardinal_pieces(k)
    at_integers = [float(sum(M[r])) for r in range(k)]  # N_k(1), ..., N_k(k)
    j = k + 1  # knot index with a full set of k non-zero basis functions (0 < j - k <= G at most)
    if j <= G + k:
        nz = B[j, 0][B[j, 0].abs() > 1e-12]
        assert sorted(nz.tolist()) == pytest.approx(sorted(at_integers), abs=1e-14)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("G", [1, 4, 9])
def test_partition_of_unity_on_grid_range(k, G):
    lo, h = _grid(G)
    s = torch.linspace(0, 1, 501, dtype=F64)[:, None]
    x = lo + s * G * h  # includes both ends lo and lo + G h
    B = uniform_bspline_basis(x, lo, h, G, k)
    assert (B.sum(-1) - 1).abs().max().item() < 1e-13
    assert (B >= -1e-15).all()


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_basis_is_exactly_zero_outside_padded_grid(k):
    G = 4
    lo, h = _grid(G)
    left = lo - k * h - torch.tensor([[1e-6], [0.1], [3.0], [100.0]], dtype=F64) * h
    right = lo + (G + k) * h + torch.tensor([[1e-6], [1e-3], [0.5], [50.0]], dtype=F64) * h
    for x in (left, right):
        B = uniform_bspline_basis(x, lo, h, G, k)
        assert B.shape == (4, 2, G + k)
        assert torch.equal(B, torch.zeros_like(B))
    # just inside the padded grid the basis is not all zero
    inside = lo + (G + k - 0.5) * h
    assert uniform_bspline_basis(inside[None], lo, h, G, k).abs().sum() > 0


def test_shapes_and_dtype_float32():
    lo = torch.tensor([-1.0, 0.0, 2.0])
    h = torch.tensor([0.5, 0.25, 1.0])
    x = torch.randn(7, 3)
    for G, k in [(4, 3), (1, 1), (10, 2)]:
        B = uniform_bspline_basis(x, lo, h, G, k)
        assert B.shape == (7, 3, G + k) and B.dtype == torch.float32
        P = padded_bspline_basis(x, lo, h, G, k)
        assert P.shape == (7, 3, G + 3 * k + 1)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_padded_layout_contracts_like_dense(k):
    """padded basis @ padded coefficients == dense basis @ coefficients, also for points outside."""
    G = 5
    lo, h = _grid(G)
    x = _points(lo, h, G, k, 300, seed=k)
    gen = torch.Generator().manual_seed(k)
    coef = torch.randn(2, G + k, 3, generator=gen, dtype=F64)
    dense = torch.einsum("bim,imo->bo", uniform_bspline_basis(x, lo, h, G, k), coef)
    padded = torch.einsum("bim,imo->bo", padded_bspline_basis(x, lo, h, G, k), pad_coefficients(coef, k))
    assert (dense - padded).abs().max().item() < 1e-12


def test_cardinal_pieces_known_values():
    assert cardinal_pieces(0) == ((Fraction(1),),)
    assert cardinal_pieces(1) == ((Fraction(0), Fraction(1)), (Fraction(1), Fraction(-1)))
    # quadratic: t^2/2, (-2t^2 + 2t + 1)/2, (1 - t)^2/2
    F = Fraction
    assert cardinal_pieces(2) == ((F(0), F(0), F(1, 2)), (F(1, 2), F(1), F(-1)), (F(1, 2), F(-1), F(1, 2)))
    M = cardinal_pieces(3)
    assert len(M) == 4 and all(len(row) == 4 for row in M)
    assert M[0] == (F(0), F(0), F(0), F(1, 6))  # t^3 / 6
    # value at the centre s = 2: piece 2 at t = 0 and piece 1 at t = 1
    assert M[2][0] == F(2, 3) and sum(M[1]) == F(2, 3)
    # value at s = 1 (and by symmetry s = 3)
    assert M[1][0] == F(1, 6) and sum(M[0]) == F(1, 6)
    assert M[3][0] == F(1, 6) and sum(M[2]) == F(1, 6)
    assert sum(M[3]) == 0  # vanishes at the end of the support


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_cardinal_pieces_integrate_to_one_and_are_continuous(k):
    M = cardinal_pieces(k)
    # integral over [0, k+1] of the cardinal B-spline is 1
    total = sum(c / (p + 1) for row in M for p, c in enumerate(row))
    assert total == 1
    # C^{k-1}: derivatives of order q < k agree at the joins (piece r at t=1 vs piece r+1 at t=0)
    def deriv_at(row, q, t):
        out = Fraction(0)
        for p, c in enumerate(row):
            if p >= q:
                coeff = c
                for j in range(q):
                    coeff *= p - j
                out += coeff * Fraction(t) ** (p - q)
        return out

    for r in range(k):
        for q in range(k):
            assert deriv_at(M[r], q, 1) == deriv_at(M[r + 1], q, 0)


def test_cardinal_pieces_rejects_negative():
    with pytest.raises(ValueError):
        cardinal_pieces(-1)


def _cdb_spline(z, knots, k, coef):
    return cox_de_boor_basis(z, knots, k) @ coef


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("which", [0, 1])
def test_spline_derivatives_match_finite_differences(k, which):
    """First and second derivative (autograd through the closed form) vs 4th-order central
    differences of the Cox–de Boor reference; degree <= 5 pieces make the stencil (nearly) exact."""
    G = 6
    lo, h = _grid(G)
    lo_i, h_i = lo[which], h[which]
    knots = _knots(lo_i, h_i, G, k)
    gen = torch.Generator().manual_seed(100 + k)
    coef = torch.randn(G + k, generator=gen, dtype=F64)
    z = lo_i - k * h_i + (G + 2 * k) * h_i * torch.rand(200, generator=gen, dtype=F64)
    # stay away from knots, where derivatives of order >= k jump
    dist = (z[:, None] - knots[None]).abs().min(dim=1).values
    z = z[dist > 0.02 * h_i]
    assert z.numel() > 100

    x = z.clone().requires_grad_(True)
    lo1, h1 = lo_i.reshape(1), h_i.reshape(1)
    s = (uniform_bspline_basis(x[:, None], lo1, h1, G, k)[:, 0] @ coef)
    (d1,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    if k >= 2:
        (d2,) = torch.autograd.grad(d1.sum(), x)
    else:  # piecewise linear: the second derivative is zero away from knots
        d2 = torch.zeros_like(z)

    e = 1e-3 * h_i
    f = {m: _cdb_spline(z + m * e, knots, k, coef) for m in (-2, -1, 0, 1, 2)}
    fd1 = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * e)
    fd2 = (-f[-2] + 16 * f[-1] - 30 * f[0] + 16 * f[1] - f[2]) / (12 * e**2)

    assert torch.allclose(s.detach(), f[0], atol=1e-12, rtol=0)
    scale1 = max(1.0, fd1.abs().max().item())
    scale2 = max(1.0, fd2.abs().max().item())
    assert (d1.detach() - fd1).abs().max().item() < 1e-6 * scale1
    assert (d2 - fd2).abs().max().item() < 1e-6 * scale2
    # the derivatives are not trivially zero
    assert fd1.abs().max() > 0.1
    if k >= 2:
        assert fd2.abs().max() > 0.1


def test_derivative_matches_analytic_derivative_of_basis():
    """d/dx of basis m equals (B_{m}^{k-1} - B_{m+1}^{k-1}) / h  (uniform knots)."""
    G, k = 5, 3
    lo, h = _grid(G)
    x = _points(lo, h, G, k, 200, seed=7).requires_grad_(True)
    B = uniform_bspline_basis(x, lo, h, G, k)  # (n, 2, G+k)
    jac = torch.stack([torch.autograd.grad(B[:, :, m].sum(), x, retain_graph=True)[0] for m in range(G + k)], dim=-1)
    # lower-degree basis on the same padded knots: k-1 padding would shift the indices, so use
    # the Cox–de Boor recursion on the degree-k knot vector with degree k-1 (G+k+1 functions).
    for i in range(2):
        knots = _knots(lo[i], h[i], G, k)
        low = cox_de_boor_basis(x[:, i].detach(), knots, k - 1)  # (n, G+k+1)
        expected = (low[:, :-1] - low[:, 1:]) / h[i]
        assert (jac[:, i] - expected).abs().max().item() < 1e-10


def test_nan_inputs_give_nan_not_an_index_error():
    """A NaN activation (parameters gone NaN in a line search) lands in the zero cell: the network's output is
    NaN, which training's rollback catches, instead of an out-of-range index."""
    import math

    from kanpde.models import KAN, native
    from kanpde.models.basis import bspline_cells

    x = torch.tensor([[0.3], [math.nan]], dtype=torch.float64)
    cells, _ = bspline_cells(x, torch.tensor([-1.0], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64), 5, 3)
    assert cells[1, 0] == 5 + 2 * 3
    net = KAN([1, 3, 1], grid=5).double()
    with torch.no_grad():
        net.layers[0].coef[0, :, 0] = math.nan  # a NaN hidden activation reaches the second layer's splines
    for on in (False, True):
        with native.switched(on):
            y = net.forward_jet(torch.tensor([[0.3], [0.5]], dtype=torch.float64))
        assert torch.isnan(y.value).all()
