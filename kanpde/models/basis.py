"""B-spline basis on uniform grids, evaluated in closed form for a whole batch at once.

On a uniform grid every degree-k B-spline is a shifted copy of one cardinal B-spline, so at a
point only k+1 basis functions are non-zero and their values are k+1 fixed polynomials of the
point's position inside its cell.  We evaluate those polynomials (no Cox–de Boor recursion) and
scatter them into the dense basis vector.  For derivatives, :func:`cell_polynomials` rewrites a
spline as one polynomial per cell, which the forward derivative pass differentiates exactly.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import comb, factorial

import torch


@lru_cache(maxsize=None)
def cardinal_pieces(k: int) -> tuple[tuple[Fraction, ...], ...]:
    """Polynomial pieces of the cardinal B-spline of degree ``k`` (support [0, k+1]).

    Returns ``M`` with ``M[r][p]`` the coefficient of ``t**p`` of the piece on ``[r, r+1)``,
    written in the local variable ``t = s - r`` in [0, 1).  Exact rational arithmetic, from
    N_k(s) = 1/k! * sum_j (-1)^j C(k+1, j) (s - j)_+^k.
    """
    if k < 0:
        raise ValueError(f"spline order k must be >= 0, got {k}")
    rows = []
    for r in range(k + 1):
        row = []
        for p in range(k + 1):
            c = sum((-1) ** j * comb(k + 1, j) * comb(k, p) * Fraction(r - j) ** (k - p) for j in range(r + 1))
            row.append(c / factorial(k))
        rows.append(tuple(row))
    return tuple(rows)


@lru_cache(maxsize=None)
def _piece_matrix(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(k+1, k+1) with ``[p, r]`` the coefficient of ``t**p`` in piece r of :func:`cardinal_pieces`;
    built once per dtype and device (no host copy per forward)."""
    return _derivative_piece_matrix(k, 0, dtype, device).T


def bspline_pieces(x: torch.Tensor, lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k+1 non-zero B-splines at each point and their slots in the padded layout.

    Args as for :func:`uniform_bspline_basis`.
    Returns:
        vals: (batch, n_in, k+1) values of the basis functions living in ``slots``.
        slots: (batch, n_in, k+1) int64 positions in the padded layout of
            :func:`padded_bspline_basis`; points outside the padded grid point at the last slot,
            whose coefficient is zero.
    """
    cell, t = bspline_cells(x, lo, h, n_intervals, k)
    return monomials(t, k, -1) @ _piece_matrix(k, x.dtype, x.device), _slots(cell, n_intervals, k, -1)


def monomials(t: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """t**0 .. t**k stacked along a new axis ``dim``."""
    powers = [torch.ones_like(t), t]
    for _ in range(k - 1):
        powers.append(powers[-1] * t)
    return torch.stack(powers[: k + 1], dim=dim)


def _slots(cell: torch.Tensor, n_intervals: int, k: int, dim: int) -> torch.Tensor:
    """The padded-layout slots of the k+1 basis functions living on each cell, along a new axis ``dim``
    (in the order of the pieces r = 0..k); points outside the padded grid point at its last slot."""
    trailing = cell.dim() - dim % (cell.dim() + 1)  # axes after the new one
    offsets = torch.arange(k + 1, device=cell.device).view(-1, *([1] * trailing))
    slots = cell.unsqueeze(dim) + k - offsets
    return slots.masked_fill((cell == n_intervals + 2 * k).unsqueeze(dim), n_intervals + 3 * k)


def padded_bspline_basis(x: torch.Tensor, lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int) -> torch.Tensor:
    """B-spline basis in a padded layout that needs no masking: (batch, n_in, G + 3k + 1).

    Slot ``k + m`` holds basis ``m`` (``0 <= m < G + k``); the other slots belong to no basis
    function and must meet zero coefficients (see :func:`pad_coefficients`).  Points outside the
    padded grid write only into the last slot.  Arguments as for :func:`uniform_bspline_basis`.
    """
    vals, slots = bspline_pieces(x, lo, h, n_intervals, k)
    dense = torch.zeros(*x.shape, n_intervals + 3 * k + 1, dtype=x.dtype, device=x.device)
    return dense.scatter(-1, slots, vals)


@lru_cache(maxsize=None)
def _derivative_piece_matrix(k: int, order: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """((k+1)·(order+1), k+1): row r·(order+1) + d maps the monomials t**q (q = 0..k) to the d-th
    t-derivative of piece r of :func:`cardinal_pieces`, entry q being (q+d)!/q! · M[q+d, r]."""
    pieces = cardinal_pieces(k)
    rows = [[float(falling_factorial(q + d, d) * pieces[r][q + d]) if q + d <= k else 0.0 for q in range(k + 1)]
            for r in range(k + 1) for d in range(order + 1)]
    return torch.tensor(rows, dtype=dtype, device=device)


def padded_bspline_derivatives(x: torch.Tensor, lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int, order: int,
                               extra: int = 0) -> torch.Tensor:
    """The padded basis of :func:`padded_bspline_basis` and its first ``order`` derivatives in x, batch last.

    Args as for :func:`uniform_bspline_basis`, plus ``extra`` trailing zero slots left for the caller.
    Returns:
        (n_in, G + 3k + 1 + extra, order + 1, batch): ``[i, s, d, b]`` the d-th derivative of slot s's
        basis function at x[b, i].  Batch last, so that contracting it with each input's coefficients
        is one batched matrix product of the shape BLAS runs fastest (few rows, long contiguous
        columns).  Differentiable in x (to any order, through the position inside the cell).
    """
    n_in, batch = x.shape[1], x.shape[0]
    cell, t = bspline_cells(x.t(), lo.unsqueeze(1), h.unsqueeze(1), n_intervals, k)  # (in, batch)
    vals = _derivative_piece_matrix(k, order, x.dtype, x.device) @ monomials(t, k, 1)  # (in, (k+1)(order+1), batch)
    d = torch.arange(order + 1, device=x.device, dtype=x.dtype)
    vals = vals.view(n_in, k + 1, order + 1, batch) * (h.unsqueeze(1) ** -d).view(n_in, 1, order + 1, 1)  # d/dx = (1/h) d/dt
    slots = _slots(cell, n_intervals, k, 1)  # (in, k+1, batch)
    dense = torch.zeros(n_in, n_intervals + 3 * k + 1 + extra, order + 1, batch, dtype=x.dtype, device=x.device)
    return dense.scatter_(1, slots.unsqueeze(2).expand(-1, -1, order + 1, -1), vals)


def bspline_cells(x: torch.Tensor, lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which cell of the padded grid each point lies in, and where inside it.

    Returns ``cell``: (batch, n_in) int64 in [0, G + 2k], where G + 2k marks a point outside the
    padded grid (the cell of :func:`cell_polynomials` that is identically zero), and ``t``:
    (batch, n_in), the position inside the cell in [0, 1), differentiable in x (dt/dx = 1/h).
    """
    n_cells = n_intervals + 2 * k
    u = (x - (lo - k * h)) / h
    cell = torch.floor(u).detach()
    t = u - cell
    outside = ~((cell >= 0) & (cell < n_cells))  # NaN counts as outside (as in the CPU kernel), never as an index
    return cell.masked_fill(outside, n_cells).long(), t


def cell_polynomials(coef: torch.Tensor, k: int) -> torch.Tensor:
    """The spline of every edge as one polynomial per cell of the padded grid.

    coef: (n_in, G + k, n_out) B-spline coefficients -> (n_in, G + 2k + 1, k + 1, n_out), where
    ``[i, c, p, o]`` is the coefficient of ``t**p`` of edge i -> o on cell c (t in [0, 1) inside
    the cell).  The last cell is all zeros: points outside the grid use it.  Differentiable in coef.
    """
    M = _piece_matrix(k, coef.dtype, coef.device)  # M[p, r]: t**p coefficient of the piece r cells into basis m's support
    windows = pad_coefficients(coef, k)[:, : coef.shape[1] + 3 * k].unfold(1, k + 1, 1)  # (in, G+2k+1, out, k+1): slots c..c+k
    # cell c meets basis slot c+k-r through piece r, i.e. window position q = k - r
    return torch.einsum("icoq,pq->icpo", windows, M.flip(1))


def falling_factorial(p: int, d: int) -> int:
    """p · (p-1) ··· (p-d+1): the factor d-fold differentiation brings down from t**p (0 if d > p)."""
    return factorial(p) // factorial(p - d) if d <= p else 0


def power_derivatives(xi: torch.Tensor, k: int, order: int) -> torch.Tensor:
    """The monomials xi**p (p = 0..k) and their first ``order`` derivatives: (batch, n_in, order+1, k+1).

    ``[b, i, d, p]`` = p!/(p-d)! · xi**(p-d) (zero for p < d).
    """
    powers = torch.cat([torch.ones_like(xi).unsqueeze(-1), xi.unsqueeze(-1).expand(*xi.shape, k).cumprod(-1)], dim=-1)
    d = torch.arange(order + 1, device=xi.device).unsqueeze(-1)
    p = torch.arange(k + 1, device=xi.device)
    falling = torch.tensor([[falling_factorial(q, e) for q in range(k + 1)] for e in range(order + 1)], dtype=xi.dtype, device=xi.device)
    return powers[..., (p - d).clamp_min(0)] * falling


def pad_coefficients(coef: torch.Tensor, k: int) -> torch.Tensor:
    """coef: (n_in, G + k, ...) -> (n_in, G + 3k + 1, ...) with zeros where the padded basis has no function."""
    pad = coef.new_zeros(coef.shape[0], k, *coef.shape[2:])
    return torch.cat([pad, coef, pad, pad[:, :1]], dim=1)


def uniform_bspline_basis(x: torch.Tensor, lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int) -> torch.Tensor:
    """Values of all ``n_intervals + k`` B-splines of degree ``k`` on a uniform grid.

    The grid of input ``i`` covers ``[lo[i], lo[i] + n_intervals*h[i]]`` and is padded by ``k``
    knots on each side (as in the KAN paper), so basis ``m`` lives on
    ``[lo + (m-k) h, lo + (m+1) h]``.  Outside the padded grid every basis function is zero.

    Args:
        x: (batch, n_in) points.
        lo: (n_in,) left end of each input's grid.
        h: (n_in,) knot spacing of each input's grid.
        n_intervals: G, the number of grid intervals.
        k: spline degree (order).
    Returns:
        (batch, n_in, G + k) basis values; differentiable in ``x`` to any order.
    """
    return padded_bspline_basis(x, lo, h, n_intervals, k)[..., k : n_intervals + 2 * k]


def cox_de_boor_basis(x: torch.Tensor, knots: torch.Tensor, k: int) -> torch.Tensor:
    """Reference B-spline basis by the Cox–de Boor recursion (slow; for tests and refits).

    Args:
        x: (batch,) points.
        knots: (n_knots,) non-decreasing knot vector.
        k: degree.
    Returns:
        (batch, n_knots - k - 1) basis values, half-open cells ``[t_j, t_{j+1})``.
    """
    x = x.unsqueeze(-1)
    B = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)
    for d in range(1, k + 1):
        left = (x - knots[: -(d + 1)]) / (knots[d:-1] - knots[: -(d + 1)]) * B[..., :-1]
        right = (knots[d + 1 :] - x) / (knots[d + 1 :] - knots[1:-d]) * B[..., 1:]
        B = left + right
    return B
