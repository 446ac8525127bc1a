"""B-splines on non-uniform knots: cell lookup, exact per-cell polynomials, and exact knot changes.

A layer's input ``i`` has a strictly increasing knot vector ``t[i, 0..n-1]`` (n = G + 2k + 1 for G
intervals padded by k knots on each side, as on a uniform grid).  Its G + k B-splines B_m live on
[t_m, t_{m+k+1}]; on cell c = [t_c, t_{c+1}) the k + 1 functions m = c - r (r = 0..k) are live, each a
polynomial of the offset xi = x - t_c.  :func:`knot_pieces` computes those polynomials exactly (the
Cox–de Boor recursion on polynomial coefficients), so a non-uniform layer uses the same per-cell tables
and kernels as a uniform one; only the cell lookup changes (a binary search instead of a division).

Outside [t_0, t_{n-1}) every basis function is zero, so a spline extends by zero: inserting a knot
anywhere inside (Boehm's algorithm, :func:`insert_knots`) or adding knots beyond the ends
(:func:`extend_knots`) keeps the function exactly, on the whole line.
"""
from __future__ import annotations

import torch

from kanpde.models.basis import monomials, pad_coefficients


def check_knots(name: str, knots: torch.Tensor, k: int) -> torch.Tensor:
    """``knots``: (in, n) strictly increasing and finite along each row, with n >= 2k + 2 (at least one
    interval between the paddings); returns it, or raises ValueError naming ``name``."""
    if not isinstance(knots, torch.Tensor) or knots.ndim != 2:
        shape = tuple(knots.shape) if isinstance(knots, torch.Tensor) else type(knots).__name__
        raise ValueError(f"{name} must be a tensor of shape (in, n_knots), got {shape}")
    if knots.shape[1] < 2 * k + 2:
        raise ValueError(f"{name} needs at least 2k + 2 = {2 * k + 2} knots per input for degree k={k}, got {knots.shape[1]}")
    if not bool(torch.isfinite(knots).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    bad = (knots.diff(dim=1) <= 0).nonzero()
    if len(bad):
        i, j = bad[0].tolist()
        raise ValueError(f"{name} must be strictly increasing: input {i} has knots[{j}]={knots[i, j].item():.17g} "
                         f">= knots[{j + 1}]={knots[i, j + 1].item():.17g}")
    return knots


def uniform_knots(lo: torch.Tensor, h: torch.Tensor, n_intervals: int, k: int) -> torch.Tensor:
    """(in, G + 2k + 1): the padded uniform grid lo + j·h, j = -k .. G + k, of each input."""
    j = torch.arange(-k, n_intervals + k + 1, dtype=lo.dtype, device=lo.device)
    return lo.unsqueeze(1) + j * h.unsqueeze(1)


def knot_cells(x: torch.Tensor, knots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which cell of its knot vector each point lies in, and the offset from the cell's left knot.

    x: (batch, in), knots: (in, n) -> ``cell`` (batch, in) int64 in [0, n - 1], n - 1 marking a point
    outside [t_0, t_{n-1}) (or NaN), and ``xi`` (batch, in) = x - t_cell, differentiable in x.
    """
    n = knots.shape[1]
    found = torch.searchsorted(knots, x.t().contiguous(), right=True).t() - 1  # t_c <= x < t_{c+1}
    outside = ~((found >= 0) & (found < n - 1)) | torch.isnan(x)  # as the CPU kernel: NaN is outside
    cell = found.masked_fill(outside, n - 1)
    left = knots.gather(1, cell.clamp_max(n - 2).t()).t()
    return cell, x - left


def knot_pieces(knots: torch.Tensor, k: int) -> torch.Tensor:
    """The B-splines' polynomial pieces on every cell: (in, n - 1, k + 1, k + 1).

    ``[i, c, r, p]`` is the coefficient of xi**p (xi = x - t_c) of basis function m = c - r on cell c
    of input i; zero where m is not one of the G + k functions.  By the Cox–de Boor recursion
    B_{j,d} = (x - t_j)/(t_{j+d} - t_j) B_{j,d-1} + (t_{j+d+1} - x)/(t_{j+d+1} - t_{j+1}) B_{j+1,d-1},
    carried out on coefficient vectors; knots beyond the ends are extrapolated for the recursion only
    (they meet functions that are then masked out).
    """
    n_in, n = knots.shape
    cells = n - 1
    left = knots[:, :1] - (knots[:, 1:2] - knots[:, :1]) * torch.arange(k, 0, -1, dtype=knots.dtype, device=knots.device)
    right = knots[:, -1:] + (knots[:, -1:] - knots[:, -2:-1]) * torch.arange(1, k + 1, dtype=knots.dtype, device=knots.device)
    ext = torch.cat([left, knots, right], dim=1)  # ext[:, k + j] = t_j, j = -k .. n - 1 + k

    def T(q: int) -> torch.Tensor:  # t_{c+q} for every cell c: (in, cells, 1)
        return ext[:, k + q : k + q + cells].unsqueeze(-1)

    def times_xi(P: torch.Tensor) -> torch.Tensor:  # coefficients of xi·P
        return torch.cat([torch.zeros_like(P[..., :1]), P[..., :-1]], dim=-1)

    one = torch.zeros(n_in, cells, k + 1, dtype=knots.dtype, device=knots.device)
    one[..., 0] = 1.0
    L = [one]  # L[r]: B_{c-r, d} on cell c
    for d in range(1, k + 1):
        new = []
        for r in range(d + 1):
            P = torch.zeros_like(one)
            if r <= d - 1:  # (x - t_j)/(t_{j+d} - t_j) · B_{j,d-1}, j = c - r, x - t_j = xi + (t_c - t_j)
                a = T(0) - T(-r)
                P = P + (times_xi(L[r]) + a * L[r]) / (T(d - r) - T(-r))
            if r >= 1:  # (t_{j+d+1} - x)/(t_{j+d+1} - t_{j+1}) · B_{j+1,d-1}
                b = T(d + 1 - r) - T(0)
                P = P + (b * L[r - 1] - times_xi(L[r - 1])) / (T(d + 1 - r) - T(1 - r))
            new.append(P)
        L = new
    pieces = torch.stack(L, dim=2)  # (in, cells, k+1 [r], k+1 [p])
    m = torch.arange(cells, device=knots.device).unsqueeze(1) - torch.arange(k + 1, device=knots.device)
    valid = (m >= 0) & (m < n - k - 1)
    return pieces * valid.to(pieces.dtype)[None, :, :, None]


def knot_cell_polynomials(coef: torch.Tensor, knots: torch.Tensor, k: int, pieces: torch.Tensor | None = None) -> torch.Tensor:
    """Every edge's spline as one polynomial per cell, in powers of xi = x - t_c.

    coef: (in, G + k, out), knots: (in, G + 2k + 1) -> (in, G + 2k + 1, k + 1, out); the last cell
    (outside the knots) is all zeros.  Differentiable in coef.  ``pieces``: :func:`knot_pieces` of the
    knots, when the caller keeps them.
    """
    if pieces is None:
        pieces = knot_pieces(knots, k)  # (in, cells, r, p)
    windows = pad_coefficients(coef, k)[:, : coef.shape[1] + 2 * k].unfold(1, k + 1, 1)  # (in, cells, out, q): basis c - k + q
    P = torch.einsum("icoq,icqp->icpo", windows, pieces.flip(2))  # window position q meets piece r = k - q
    return torch.cat([P, P.new_zeros(P.shape[0], 1, *P.shape[2:])], dim=1)


def knot_basis(x: torch.Tensor, knots: torch.Tensor, k: int) -> torch.Tensor:
    """Values of all G + k B-splines: x (batch, in) -> (batch, in, G + k); zero outside the knots.
    Differentiable in x (through the offsets inside the cells)."""
    n = knots.shape[1]
    cell, xi = knot_cells(x, knots)
    pieces = knot_pieces(knots, k)
    pieces = torch.cat([pieces, pieces.new_zeros(pieces.shape[0], 1, *pieces.shape[2:])], dim=1)  # outside: zero
    rows = cell + n * torch.arange(x.shape[1], device=x.device)
    local = pieces.flatten(0, 1)[rows]  # (batch, in, r, p)
    powers = monomials(xi, k, -1)  # (batch, in, p)
    vals = (local @ powers.unsqueeze(-1)).squeeze(-1)  # (batch, in, r)
    slots = cell.unsqueeze(-1) - torch.arange(k + 1, device=x.device) + k  # basis m = c - r, slot m + k
    dense = x.new_zeros(*x.shape, n - 1 + 2 * k)
    dense = dense.scatter_add(-1, slots.clamp(0, n - 2 + 2 * k), vals)
    return dense[..., k : n - 1]


def insertion_map(knots: torch.Tensor, new: torch.Tensor, k: int) -> torch.Tensor:
    """Boehm's knot insertion as a linear map: (in, G + k + 1, G + k) with new coef[i] = map[i] @ coef[i]
    when knot ``new[i]`` joins input i's knots.  Exact: the spline does not change anywhere.

    With c the cell of the new knot x̂: Q_j = P_j (j <= c - k), Q_j = (1 - a_j) P_{j-1} + a_j P_j with
    a_j = (x̂ - t_j)/(t_{j+k} - t_j) (c - k < j <= c), Q_j = P_{j-1} (j > c); coefficients of functions
    that do not exist count as zero.
    """
    n_in, n = knots.shape
    nb = n - k - 1
    inside = (new > knots[:, 0]) & (new < knots[:, -1])
    if not bool(inside.all()):
        i = int((~inside).nonzero()[0])
        raise ValueError(f"a knot to insert must lie inside the knot vector: input {i} gets {new[i].item():.17g} "
                         f"outside ({knots[i, 0].item():.17g}, {knots[i, -1].item():.17g})")
    if bool((knots == new.unsqueeze(1)).any()):
        i = int((knots == new.unsqueeze(1)).any(1).nonzero()[0])
        raise ValueError(f"knots must stay strictly increasing: input {i} already has a knot at {new[i].item():.17g}")
    c = (torch.searchsorted(knots, new.unsqueeze(1).contiguous(), right=True) - 1).squeeze(1)  # (in,)
    j = torch.arange(nb + 1, device=knots.device)  # new functions
    jc = j.unsqueeze(0)
    cc = c.unsqueeze(1)
    tj = knots.gather(1, jc.clamp_max(n - 1).expand(n_in, -1))
    tjk = knots.gather(1, (jc + k).clamp_max(n - 1).expand(n_in, -1))
    a = ((new.unsqueeze(1) - tj) / (tjk - tj)).clamp(0.0, 1.0)
    blend = (jc > cc - k) & (jc <= cc)
    keep = jc <= cc - k  # Q_j = P_j
    shift = jc > cc  # Q_j = P_{j-1}
    w_same = torch.where(keep, 1.0, torch.where(blend, a, 0.0)).to(knots.dtype)  # weight of P_j
    w_prev = torch.where(shift, 1.0, torch.where(blend, 1.0 - a, 0.0)).to(knots.dtype)  # weight of P_{j-1}
    M = knots.new_zeros(n_in, nb + 1, nb)
    rows = j[:nb]
    M[:, rows, rows] = w_same[:, :nb]
    M[:, rows + 1, rows] = w_prev[:, 1:]
    return M


def insert_knots(knots: torch.Tensor, coef: torch.Tensor, new: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert the knots ``new`` (in, m), m per input, keeping every spline exactly (Boehm).

    knots (in, n), coef (in, n - k - 1, out) -> (knots (in, n + m), coef (in, n + m - k - 1, out)).
    """
    for col in new.unbind(1):
        M = insertion_map(knots, col, k)
        coef = M.to(coef.dtype) @ coef
        knots = torch.sort(torch.cat([knots, col.unsqueeze(1)], dim=1), dim=1).values
    return knots, coef


def extend_knots(knots: torch.Tensor, coef: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Add knots beyond the ends: ``left`` (in, m) below t_0 and ``right`` (in, m') above t_{n-1}, each row
    increasing.  Each added knot adds one B-spline at that end, with coefficient zero, so every spline
    keeps its values on the whole line."""
    if left.shape[1] and not bool((left[:, -1] < knots[:, 0]).all() and (left.diff(dim=1) > 0).all()):
        raise ValueError("knots added on the left must increase and lie below the first knot")
    if right.shape[1] and not bool((right[:, 0] > knots[:, -1]).all() and (right.diff(dim=1) > 0).all()):
        raise ValueError("knots added on the right must increase and lie above the last knot")
    zeros = coef.new_zeros
    coef = torch.cat([zeros(coef.shape[0], left.shape[1], coef.shape[2]), coef, zeros(coef.shape[0], right.shape[1], coef.shape[2])], dim=1)
    return torch.cat([left.to(knots), knots, right.to(knots)], dim=1), coef


def removal_cost(coef: torch.Tensor, knots: torch.Tensor, k: int) -> torch.Tensor:
    """(in, n) how much removing each knot would change its input's edges: sum over the edges of the jump of
    the k-th derivative at the knot, times ((t_{j+1} - t_{j-1}) / 2)^k / k!.

    A spline is s = s_0 + J (x - t_j)_+^k / k! with s_0 free of the knot t_j, J the jump of s^(k) there; the
    truncated power's distance from splines without t_j scales as the local spacing to the k-th power, so
    this is the size of the change a least-squares removal makes (the error estimate of knot-removal
    schemes).  Zero at a knot that was inserted exactly (the polynomial runs on across it).  The first and
    last knots (where the splines' supports end) cost infinity: they never leave.
    coef: (in, G + k, out) the edges' coefficients (scales included), knots: (in, G + 2k + 1)."""
    top = knot_cell_polynomials(coef, knots, k)[:, :-1, k, :]  # (in, cells, out): s^(k) / k! on each cell
    jump = (top[:, 1:] - top[:, :-1]).abs().sum(-1)  # (in, n - 2): at the knots t_1 .. t_{n-2}
    spread = ((knots[:, 2:] - knots[:, :-2]) / 2) ** k
    inf = torch.full_like(knots[:, :1], float("inf"))
    return torch.cat([inf, jump * spread, inf], dim=1)


def interior(knots: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(in,) the ends t_k and t_{n-1-k} of the range on which the B-splines sum to one."""
    return knots[:, k], knots[:, -1 - k]


def subdivision(knots: torch.Tensor, k: int, m: int) -> torch.Tensor:
    """(in, m) knots that refine each input's interior geometrically: every interior cell split into
    ``(G + m) // G`` equal parts (as a uniform refinement), then the longest cells halved, one knot each,
    until m are placed.  On a uniform grid with m a multiple of G this is the uniform grid of G + m."""
    lo, hi = k, knots.shape[1] - 1 - k
    G = hi - lo
    parts = (G + m) // G
    frac = torch.arange(1, parts, dtype=knots.dtype, device=knots.device) / parts
    t = knots[:, lo:hi + 1]
    even = (t[:, :-1, None] + t.diff(dim=1)[..., None] * frac).flatten(1)  # (in, G·(parts - 1))
    rows = []
    for i in range(knots.shape[0]):
        cuts = torch.sort(torch.cat([t[i], even[i]])).values
        chosen = [even[i]]
        for _ in range(m - even.shape[1]):
            c = int(cuts.diff().argmax())
            mid = (cuts[c] + cuts[c + 1]) / 2
            chosen.append(mid.reshape(1))
            cuts = torch.sort(torch.cat([cuts, mid.reshape(1)])).values
        rows.append(torch.cat(chosen))
    return torch.stack(rows)


def cover(knots: torch.Tensor, lo: float, hi: float, k: int) -> torch.Tensor:
    """One input's knots (n,) with knots added beyond the ends, as few as needed, so that the interior
    [t_k, t_{n-1-k}] covers [lo, hi].  Added knots continue the end cells' spacing, widened where more
    than k of them would be needed (at most 2k per end)."""
    parts = [knots]
    for side in (-1, 1):
        t = parts[-1] if side == 1 else parts[0]
        end = t[0] if side == -1 else t[-1]
        inner = t[k] if side == -1 else t[-1 - k]
        target = lo if side == -1 else hi
        gap = (inner - target) * -side  # how far the interior end must move outwards (> 0: it must)
        if gap <= 0:
            continue
        spacing = (t[1] - t[0]) if side == -1 else (t[-1] - t[-2])
        beyond = max(float((end - target) * -side), 0.0)  # past the last knot
        spacing = max(float(spacing), beyond / k if beyond > 0 else 0.0)
        # the padding knots become interior one by one as knots are added; then the new ones do
        added = []
        for m in range(1, 3 * k + 1):
            added.append(end + side * m * spacing)
            reach = t[k - m] if (side == -1 and m <= k) else t[-1 - k + m] if (side == 1 and m <= k) else added[m - k - 1]
            if (reach - target) * side >= 0:
                break
        new = torch.stack([torch.as_tensor(a, dtype=knots.dtype, device=knots.device) for a in added])
        parts = [new.flip(0), *parts] if side == -1 else [*parts, new]
    return torch.cat(parts)
