"""Kolmogorov–Arnold Network with B-spline edges on uniform grids (Liu et al. 2024, arXiv 2404.19756).

Each edge (i -> o) carries phi(x) = scale_base * silu(x) + scale_sp * spline(x); a node sums its
incoming edges.  The spline basis is evaluated in closed form for the whole batch (``basis.py``)
and contracted with the coefficients in one matrix product per layer.  :class:`KAN` can instead
build its layers with Chebyshev (``chebyshev.py``) or Gaussian RBF (``rbf.py``) edges, with the
same number of parameters (``basis``).
"""
from __future__ import annotations

from math import factorial
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from kanpde import checks
from kanpde.models.jet import Jet, Pairs, silu_derivatives
from kanpde.models import layer_op
from kanpde.models.basis import (bspline_cells, cell_polynomials, falling_factorial, pad_coefficients, padded_bspline_basis,
                    padded_bspline_derivatives, uniform_bspline_basis)
from kanpde.models.chebyshev import ChebyshevKANLayer
from kanpde.models.edge import EdgeLayer
from kanpde.models.embedding import embedding_from
from kanpde.models.knots import (check_knots, cover, extend_knots, insert_knots, interior, knot_basis,
                                 knot_cell_polynomials, knot_cells, knot_pieces, subdivision, uniform_knots)
from kanpde.models.normalize import BoxNormalizer
from kanpde.models.rbf import RBFKANLayer


class _EdgeDerivatives(torch.autograd.Function):
    """Edge values and derivatives (see :meth:`KANLayer.edge_derivatives`) with a hand-written backward.

    A point in cell c at offset xi from the cell's left knot sees, on edge i -> o, the polynomial
    sum_p Q[(i, c), (p, o)] · xi**p plus Q[(i, c), (k+1, o)] · silu(h).  All its derivatives come
    from one Horner pass (a fused multiply-add per order and step).  The gradients are
    dQ[p] = sum_d dE_d · p!/(p-d)! · xi**(p-d) (summed per cell), dQ[k+1] = sum_d dE_d · silu^(d),
    and dh = sum_{d,o} dE_d · E_{d+1}: when h needs a gradient, the forward pass computes one
    order more than it returns.
    """

    @staticmethod
    def forward(ctx, h, Q, cell, xi, k: int, order: int):  # type: ignore[override]
        xi = xi.unsqueeze(-1)  # (batch, in, 1)
        rows = cell + (Q.shape[0] // h.shape[1]) * torch.arange(h.shape[1], device=h.device)
        # each point's cell coefficients: one row per (point, input) gathered (measured fastest), then
        # a strided view per feature: c[f] is (batch, in, out)
        c = Q.index_select(0, rows.flatten()).view(*rows.shape, k + 2, -1).unbind(2)
        top = order + 1 if h.requires_grad else order
        # r[d] = (d-th derivative)/d! of the polynomial part, by Horner's rule for all derivatives at once
        r = [c[k]]
        for p in range(k - 1, -1, -1):
            grew = len(r) <= min(top, k - p)
            if grew:  # the next derivative starts as 0·xi + r[-1]
                r.append(r[-1])
            for d in range(len(r) - 1 - grew, 0, -1):
                r[d] = torch.addcmul(r[d - 1], r[d], xi)
            r[0] = torch.addcmul(c[p], r[0], xi)
        silu = silu_derivatives(h, top).unsqueeze(-1)  # (batch, in, top+1, 1)
        E = [torch.addcmul(r[d] * factorial(d) if d else r[0], silu[:, :, d], c[k + 1]) if d < len(r)
             else silu[:, :, d] * c[k + 1] for d in range(top + 1)]
        ctx.save_for_backward(xi, rows, silu[:, :, : order + 1], *E[1:])
        ctx.k, ctx.Q_shape = k, Q.shape
        return tuple(E[: order + 1])

    @staticmethod
    @once_differentiable
    def backward(ctx, *dE):  # type: ignore[override]
        k = ctx.k
        xi, rows, silu, *E_next = ctx.saved_tensors
        given = [(d, g) for d, g in enumerate(dE) if g is not None]
        dh = dQ = None
        if ctx.needs_input_grad[0]:
            dh = sum((g * E_next[d]).sum(-1) for d, g in given)
        if ctx.needs_input_grad[1]:
            xi_pow = [torch.ones_like(xi), xi]
            for _ in range(k - 1):
                xi_pow.append(xi_pow[-1] * xi)
            n_feat = k + 2
            n_rows, n_out = ctx.Q_shape[0], ctx.Q_shape[1] // n_feat
            per_point = given[0][1].new_empty(n_feat, *given[0][1].shape)  # (k+2, batch, in, out)
            for p in range(k + 2):
                terms = [(g, silu[:, :, d], 1) if p == k + 1 else (g, xi_pow[p - d], falling_factorial(p, d))
                         for d, g in given if p == k + 1 or d <= p]
                if not terms:
                    per_point[p].zero_()
                    continue
                g, w, f = terms[0]
                torch.mul(g, w if f == 1 else w * f, out=per_point[p])
                for g, w, f in terms[1:]:
                    per_point[p].addcmul_(g, w, value=f)
            # sum per cell (bincount measured fastest on the CPU): each entry goes to its flat (cell, output) slot
            slot = rows.flatten() if n_out == 1 else (rows.view(-1, 1) * n_out + torch.arange(n_out, device=rows.device)).flatten()
            if slot.is_cuda:  # CUDA's bincount reads the largest index back to the host (a sync); index_add_ does not
                sums = [per_point.new_zeros(n_rows * n_out).index_add_(0, slot, per_point[f].flatten()) for f in range(n_feat)]
            else:
                sums = [torch.bincount(slot, weights=per_point[f].flatten(), minlength=n_rows * n_out) for f in range(n_feat)]
            dQ = torch.stack([v.view(n_rows, n_out) for v in sums], dim=1).view(ctx.Q_shape).to(per_point.dtype)
        return dh, dQ, None, None, None, None


def _input_jet(W: torch.Tensor, A: torch.Tensor, *mats: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The first layer's jet from its dense basis: W (in, out, slots) the edges' coefficients,
    A (in, slots, order+1, batch) the basis and its derivatives, mats[d-1] (m_d, in) the inputs'
    d-th order products (J, then J_a·J_b).  R = W·A holds every edge's derivatives (in, out,
    order+1, batch); returns the value (batch, out) and, per order d, (m_d, batch, out) = mats[d-1]·R_d."""
    n_in, n_slots, n_orders, batch = A.shape
    R = torch.bmm(W, A.view(n_in, n_slots, -1)).view(n_in, -1, n_orders, batch)
    value = R[:, :, 0].sum(0).t().contiguous()
    return value, *(torch.tensordot(M, R[:, :, d], 1).transpose(1, 2).contiguous() for d, M in enumerate(mats, start=1))


class _InputJet(torch.autograd.Function):
    """:func:`_input_jet` for a basis A that needs no gradient (the points are data), with a
    hand-written backward: dR gathers the outputs' gradients order by order, dW = dR · Aᵀ."""

    @staticmethod
    def forward(ctx, W, A, *mats):  # type: ignore[override]
        ctx.save_for_backward(A, *mats)
        ctx.n_out = W.shape[1]
        return _input_jet(W, A, *mats)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):  # type: ignore[override]
        A, *mats = ctx.saved_tensors
        n_in, n_slots, n_orders, batch = A.shape
        dR = A.new_zeros(n_in, ctx.n_out, n_orders, batch)
        if grads[0] is not None:
            dR[:, :, 0] = grads[0].t()  # the same for every input
        for d, (M, g) in enumerate(zip(mats, grads[1:]), start=1):
            if g is not None:
                dR[:, :, d] = torch.tensordot(M.t(), g.transpose(1, 2), 1)
        dW = torch.bmm(dR.view(n_in, ctx.n_out, -1), A.view(n_in, n_slots, -1).transpose(1, 2))
        return dW, None, *(None for _ in mats)


class KANLayer(EdgeLayer):
    """One KAN layer of ``in_features * out_features`` learnable activation functions: B-spline edges.

    The knots are uniform (``grid_lo``, ``grid_h``: the fast default) until a knot operation
    (:meth:`insert_knots`, :meth:`refine_to`, :meth:`move_knots`, :meth:`set_knots`) makes them free: then
    ``knots`` (in, G + 2k + 1) holds each input's knot vector, shared by the input's ``out_features``
    edges, so that one cell lookup per point and input serves all of them (as on a uniform grid) and
    the per-cell polynomial tables and the CPU kernel keep their layout.

    Args:
        in_features, out_features: layer widths.
        grid: G, number of grid intervals on each input's range.
        k: spline degree (3 = cubic).
        grid_range: initial range of every input's grid.
        init_scale: standard deviation of the initial spline coefficients.
    """

    knots: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, grid: int = 5, k: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), init_scale: float = 0.1) -> None:
        super().__init__(in_features, out_features, grid, k, grid_range, init_scale)
        lo, hi = self.initial_range
        dtype = self.coef.dtype
        self.register_buffer("grid_lo", torch.full((in_features,), lo, dtype=dtype))
        self.register_buffer("grid_h", torch.full((in_features,), (hi - lo) / grid, dtype=dtype))
        self.register_buffer("knots", None)

    @property
    def uniform(self) -> bool:
        """Whether the knots are the uniform grid ``grid_lo + j·grid_h`` (no ``knots`` buffer)."""
        return self.knots is None

    def pieces(self) -> torch.Tensor:
        """:func:`~kanpde.models.knots.knot_pieces` of the free knots, kept until the knots change (they are
        a few dozen small operations per layer, a fixed cost each evaluation would otherwise pay)."""
        t = self.knots
        if torch.compiler.is_compiling():
            return knot_pieces(t, self.k)
        cached = getattr(self, "_pieces_cache", None)  # (the knots tensor itself, its version, k, pieces)
        if cached is None or cached[0] is not t or cached[1] != t._version or cached[2] != self.k:
            cached = self._pieces_cache = (t, t._version, self.k, knot_pieces(t, self.k))
        return cached[3]

    def locate(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h: (batch, in) -> each point's cell (batch, in) int64 (G + 2k: outside the knots) and its
        offset xi (batch, in) from the cell's left knot, differentiable in h."""
        if self.knots is None:
            cell, t = bspline_cells(h, self.grid_lo, self.grid_h, self.grid, self.k)
            return cell, t * self.grid_h
        return knot_cells(h, self.knots)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, in, G + k) B-spline basis values."""
        if self.knots is not None:
            return knot_basis(x, self.knots, self.k)
        return uniform_bspline_basis(x, self.grid_lo, self.grid_h, self.grid, self.k)

    def kernel_applies(self, x: torch.Tensor) -> bool:
        """Whether a kernel of the registered operator :func:`~kanpde.models.layer_op.layer_jet` serves this
        layer at x: the C kernel for CPU tensors, the Triton kernel for CUDA tensors, where each is available."""
        return layer_op.applies(x, self.k)

    def forward_numeric(self, x: torch.Tensor, graph_to_input: bool = True) -> torch.Tensor:
        """x: (batch, in) -> (batch, out).

        Where a kernel applies (:meth:`kernel_applies`) and no graph to the input is asked for, it evaluates
        each point's cell polynomial (cost flat in G); otherwise free knots take the per-cell torch operations
        and uniform grids the dense padded basis (one matrix product, whose width grows with G)."""
        if not graph_to_input and self.kernel_applies(x):
            none = x.new_empty(0, x.shape[1], x.shape[0])  # no input derivatives carried
            value = layer_op.layer_jet(x.t(), none, None, self.cell_coefficients(), self.grid_lo, self.grid_h,
                                       self.knots, self.k, ())[0]
            return value.t()
        if self.knots is not None:  # per-cell polynomials: no dense basis on non-uniform knots
            return self.edge_derivatives(x, 0, graph_to_input=graph_to_input)[0].sum(1)
        base, sp = self.scales()
        B = padded_bspline_basis(x, self.grid_lo, self.grid_h, self.grid, self.k).flatten(1)
        W = pad_coefficients(self.coef * sp.unsqueeze(1), self.k).flatten(0, 1)
        return B @ W + F.silu(x) @ base

    def edge_derivatives(self, h: torch.Tensor, order: int, graph_to_input: bool = False) -> tuple[torch.Tensor, ...]:
        """Every edge's value and first ``order`` derivatives at its input, h: (batch, in) ->
        ``order+1`` tensors (batch, in, out); ``[d][b, i, o]`` is the d-th derivative of edge i -> o at h[b, i].

        Closed form: each edge's spline is one polynomial per grid cell (:func:`cell_polynomials`);
        a point picks its cell's polynomial, differentiates it exactly and adds silu's derivatives.
        The backward pass is written by hand (:class:`_EdgeDerivatives`), cheaper than autograd;
        ``graph_to_input=True`` instead records ordinary autograd operations, so that derivatives of
        the result with respect to ``h`` can themselves be differentiated (higher-order partials).
        """
        Q = self.cell_coefficients()
        cell, xi = self.locate(h)
        if not graph_to_input:
            Q = Q.flatten(0, 1).flatten(1)  # (in*(G+2k+1), (k+2)*out): one row per (input, cell)
            return _EdgeDerivatives.apply(h, Q, cell, xi.detach(), self.k, order)
        X = layer_op.cell_features(h, xi, self.k, order)
        return (X @ Q.flatten(0, 1)[cell + Q.shape[1] * torch.arange(self.in_features, device=h.device)]).unbind(2)

    def cell_coefficients(self) -> torch.Tensor:
        """(in, G + 2k + 1, k + 2, out): on cell c of input i's padded grid, edge i -> o is
        sum_p Q[i, c, p, o] · xi**p + Q[i, c, k+1, o] · silu(h), xi the offset from the cell's left knot.
        The last cell (outside the grid) has only the silu term.  Differentiable in the parameters."""
        base, sp = self.scales()
        if self.knots is not None:
            P = knot_cell_polynomials(self.coef * sp.unsqueeze(1), self.knots, self.k, self.pieces())  # in powers of xi already
        else:
            P = cell_polynomials(self.coef * sp.unsqueeze(1), self.k)  # (in, G+2k+1, k+1, out), in powers of t
            P = P * self.grid_h[:, None, None, None] ** -torch.arange(self.k + 1, device=P.device, dtype=P.dtype)[:, None]  # powers of xi = t·h
        return torch.cat([P, base[:, None, None, :].expand(-1, P.shape[1], 1, -1)], dim=2)  # silu's scale as one more row

    def forward_jet(self, jet: Jet, graph_to_input: bool = False) -> Jet:
        """See :meth:`EdgeLayer.forward_jet`.  Where a kernel applies (:meth:`kernel_applies`: the C kernel
        on the CPU, Triton on CUDA) it does the whole layer in one pass over the points, as the registered
        operator :func:`~kanpde.models.layer_op.layer_jet` (kept under ``torch.compile``): numeric and pruned
        edges only, and no graph to the inputs asked for (it differentiates once)."""
        if graph_to_input or (self.symbolic is not None and self.symbolic.groups) or not self.kernel_applies(jet.value):
            return super().forward_jet(jet, graph_to_input)
        # the kernel works batch last; its outputs' transposes are the jet, and the next layer's
        # transposes of those are free
        F = jet.first.transpose(1, 2).expand(-1, -1, jet.value.shape[0])
        S = None if jet.second is None else jet.second.transpose(1, 2)
        value, first, second = layer_op.layer_jet(jet.value.t(), F, S, self.cell_coefficients(),
                                                  self.grid_lo, self.grid_h, self.knots, self.k, jet.pairs)
        return Jet(value.t(), first.transpose(1, 2), second.transpose(1, 2) if jet.pairs else None, jet.pairs)

    def input_jet(self, jet: Jet, graph_to_input: bool = False) -> Jet:
        """See :meth:`EdgeLayer.input_jet`.

        On the network's inputs the dense basis and its derivatives (:func:`padded_bspline_derivatives`)
        meet the coefficients in one batched matrix product (:func:`_input_jet`).  Unless the graph
        to the inputs is asked for, that basis is a constant of the points and the backward is one
        more matrix product (:class:`_InputJet`): no per-point gather and no per-cell sum.
        """
        J = jet.first[:, 0]  # (dim, in)
        JJ = jet.first_products()[:, 0] if jet.pairs else None
        if (self.symbolic is not None and self.symbolic.groups) or J.requires_grad or self.knots is not None:
            return super().input_jet(jet, graph_to_input)
        base, sp = self.scales()
        h = jet.value
        n_slots = self.grid + 3 * self.k + 1
        order = 2 if jet.pairs else 1
        A = padded_bspline_derivatives(h, self.grid_lo, self.grid_h, self.grid, self.k, order, extra=1)  # (in, slots+1, order+1, batch)
        A[:, n_slots] = silu_derivatives(h.t(), order).transpose(1, 2)  # silu's derivatives meet base in the last slot
        W = torch.cat([pad_coefficients(self.coef * sp.unsqueeze(1), self.k), base.unsqueeze(1)], dim=1).transpose(1, 2)  # (in, out, slots+1)
        mats = (J,) if JJ is None else (J, JJ)
        parts = _input_jet(W, A, *mats) if A.requires_grad else _InputJet.apply(W, A, *mats)
        return Jet(parts[0], parts[1], parts[2] if jet.pairs else None, jet.pairs)

    def grid_ranges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(in,) left and right ends of each input's grid (where its B-splines sum to one)."""
        if self.knots is not None:
            return interior(self.knots, self.k)
        return self.grid_lo, self.grid_lo + self.grid * self.grid_h

    def knot_vector(self) -> torch.Tensor:
        """(in, G + 2k + 1) each input's knots, padding included (the uniform grid's where the knots are uniform)."""
        if self.knots is not None:
            return self.knots
        return uniform_knots(self.grid_lo, self.grid_h, self.grid, self.k)

    @torch.no_grad()
    def set_knots(self, knots: torch.Tensor, coef: torch.Tensor) -> None:
        """Take the knot vectors ``knots`` (in, G' + 2k + 1) and coefficients ``coef`` (in, G' + k, out):
        the layer becomes non-uniform with G' intervals.  A new coefficient parameter: rebuild the optimiser."""
        knots = check_knots("knots", knots.to(self.coef), self.k)
        if knots.shape[0] != self.in_features or coef.shape[:2] != (self.in_features, knots.shape[1] - self.k - 1):
            raise ValueError(f"set_knots: knots {tuple(knots.shape)} and coef {tuple(coef.shape)} do not fit a layer of "
                             f"{self.in_features} inputs at degree {self.k}")
        self.grid = knots.shape[1] - 2 * self.k - 1
        self.knots = knots.contiguous()
        lo, hi = interior(knots, self.k)
        self.grid_lo.copy_(lo)
        self.grid_h.copy_((hi - lo) / self.grid)  # the mean spacing: kept for what reads a uniform grid's spacing
        self.coef = nn.Parameter(coef.to(self.coef).contiguous())

    @torch.no_grad()
    def insert_knots(self, new: torch.Tensor) -> None:
        """Insert the knots ``new`` (in, m), m per input, keeping every edge exactly (Boehm's algorithm)."""
        knots, coef = insert_knots(self.knot_vector().to(torch.float64), self.coef.to(torch.float64),
                                   new.to(torch.float64), self.k)
        self.set_knots(knots, coef)

    @torch.no_grad()
    def refine_to(self, knots: torch.Tensor) -> None:
        """Move to knot vectors ``knots`` (in, n') that contain every current knot, keeping each edge exactly on
        the whole line: knots beyond the ends add B-splines with zero coefficients, knots inside are inserted."""
        f64 = torch.float64
        old, new = self.knot_vector().to(f64), check_knots("knots", knots.to(f64), self.k)
        if new.shape[0] != self.in_features:
            raise ValueError(f"refine_to: knots {tuple(new.shape)} must have one row per input ({self.in_features})")
        rows, coefs = [], []
        for i in range(self.in_features):
            t, row, c = old[i : i + 1], new[i], self.coef[i : i + 1].to(f64)
            if not bool(torch.isin(t[0], row).all()):
                raise ValueError(f"refine_to: the new knots of input {i} drop some of its knots; use move_knots to remove knots")
            left, right = row[row < t[0, 0]], row[row > t[0, -1]]
            inner = row[(row > t[0, 0]) & (row < t[0, -1]) & ~torch.isin(row, t[0])]
            t, c = extend_knots(t, c, left.unsqueeze(0), right.unsqueeze(0))
            t, c = insert_knots(t, c, inner.unsqueeze(0), self.k)
            rows.append(t[0])
            coefs.append(c[0])
        self.set_knots(torch.stack(rows), torch.stack(coefs))

    @torch.no_grad()
    def move_knots(self, knots: torch.Tensor, n_fit: int | None = None) -> None:
        """Move to the knot vectors ``knots`` (in, n'), keeping each edge as far as the new splines allow: a
        least-squares fit on samples inside every old and new cell (exact where the new knots contain the old)."""
        f64 = torch.float64
        new = check_knots("knots", knots.to(f64), self.k)
        old = self.knot_vector().to(f64)
        per_cell = n_fit or 2 * (self.k + 1)
        frac = (torch.arange(per_cell, dtype=f64, device=new.device) + 0.5) / per_cell
        z = torch.cat([(kv[:, :-1, None] + kv.diff(dim=1)[..., None] * frac).flatten(1) for kv in (old, new)], dim=1).t()
        values = torch.einsum("bim,imo->bio", knot_basis(z, old, self.k), self.coef.to(f64))  # (n_fit, in, out)
        A = knot_basis(z, new, self.k).transpose(0, 1)  # (in, n_fit, n' - k - 1)
        coef = torch.linalg.lstsq(A.cpu(), values.transpose(0, 1).cpu(), driver="gelsd").solution
        self.set_knots(new, coef.to(new.device))

    def extend(self, grid: int) -> None:
        """Grid extension to ``grid`` intervals.  Uniform knots: the least-squares refit of :meth:`refit` (exact
        inside the range for a multiple of G, not on the padding).  Free knots: knots inserted (exact on the
        whole line), each interior cell split into ``grid // G`` equal parts, then the longest cells halved
        until ``grid`` is reached."""
        grid = checks.positive_int("grid", grid)
        if self.knots is None or grid < self.grid:
            return self.refit(grid)
        self.insert_knots(subdivision(self.knots, self.k, grid - self.grid))

    @torch.no_grad()
    def refit(self, grid: int, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None, n_fit: int | None = None) -> None:
        """Move to a new uniform grid (G intervals on ``[lo, hi]`` per input), keeping the function.

        The new coefficients are the least-squares fit of the old splines on a dense uniform
        sample of the new range.  A refinement of the old grid on the same range (G -> m*G)
        reproduces the function exactly; other changes are the best approximation.
        """
        grid = checks.positive_int("grid", grid)
        old_lo, old_hi = self.grid_ranges()
        lo = old_lo.clone() if lo is None else lo.to(old_lo)
        hi = old_hi.clone() if hi is None else hi.to(old_hi)
        if not bool((hi > lo).all()):
            raise ValueError(f"refit: new grid ranges must be increasing, got lo={lo.tolist()} hi={hi.tolist()}")
        n_fit = n_fit or max(256, 8 * (grid + self.k))
        f64 = torch.float64
        s = torch.linspace(0.0, 1.0, n_fit, dtype=f64, device=lo.device)
        z = lo.to(f64) + s[:, None] * (hi - lo).to(f64)  # (n_fit, in)
        old_basis = (knot_basis(z, self.knots.to(f64), self.k) if self.knots is not None
                     else uniform_bspline_basis(z, self.grid_lo.to(f64), self.grid_h.to(f64), self.grid, self.k))
        old = torch.einsum("bim,imo->bio", old_basis, self.coef.to(f64))  # (n_fit, in, out)
        new_h = (hi - lo).to(f64) / grid
        A = uniform_bspline_basis(z, lo.to(f64), new_h, grid, self.k).transpose(0, 1)  # (in, n_fit, G'+k)
        coef = torch.linalg.lstsq(A.cpu(), old.transpose(0, 1).cpu(), driver="gelsd").solution  # (in, G'+k, out)
        self.grid = grid
        self.knots = None  # uniform again
        self.grid_lo.copy_(lo)
        self.grid_h.copy_(new_h.to(self.grid_h.dtype))
        # lstsq returns column-major results: keep the parameter contiguous (L-BFGS views its gradient flat)
        self.coef = nn.Parameter(coef.to(device=self.coef.device, dtype=self.coef.dtype).contiguous())


def sparsity(sizes: Sequence[torch.Tensor], l1: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
    """The sparsity penalty of the edges' sizes |phi|_1 (one (in, out) per layer, :meth:`KAN.edge_sizes`)."""
    total = sizes[0].new_zeros(())
    for size in sizes:
        layer_l1 = size.sum()
        share = size / layer_l1.clamp_min(torch.finfo(size.dtype).tiny)
        total = total + l1 * layer_l1 - entropy * (share * torch.log(share.clamp_min(1e-30))).sum()
    return total


Extremes = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(lo, hi) -> (lo, hi) combined with other processes' (:meth:`KAN.input_ranges`)."""

BASES: dict[str, type[EdgeLayer]] = {"bspline": KANLayer, "chebyshev": ChebyshevKANLayer, "rbf": RBFKANLayer}
"""Edge basis name -> layer class (the ``basis`` argument of :class:`KAN`)."""


class KAN(nn.Module):
    """A KAN of widths ``width`` (e.g. ``[2, 10, 1]``) mapping x: (batch, width[0]) to (batch, width[-1]).

    Inputs are first mapped from the box ``bounds = (lower, upper)`` (the domain's bounding box)
    onto ``grid_range``; the map is a buffer saved with the model.

    Args:
        width: layer widths, input first.
        grid: G, grid intervals per edge.
        k: spline degree.
        bounds: ``(lower, upper)`` of the inputs, or None if inputs already lie in ``grid_range``.
        grid_range: range of the first layer's grids (and the initial range of the others).
        init_scale: std of initial spline coefficients.
        basis: the edges' basis, G + k functions per edge for each, so the parameter count does
            not depend on it: ``bspline`` (degree-k B-splines on G intervals), ``chebyshev``
            (T_0 .. T_{G+k-1} of tanh(x); no range) or ``rbf`` (G + k Gaussians on the range).
        embedding: features between the normalisation and the first layer, ``{"periodic": {axis: modes},
            "fourier": {"inputs": [axes], "features": m, "scale": sigma}}`` (:mod:`kanpde.models.embedding`);
            the first layer then has one input per feature.
    """

    def __init__(
        self,
        width: Sequence[int],
        grid: int = 5,
        k: int = 3,
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
        basis: str = "bspline",
        embedding: dict | None = None,
    ) -> None:
        super().__init__()
        self.width = checks.widths("width", width)
        grid = checks.positive_int("grid", grid)
        self.k = checks.positive_int("k", k)
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        if not self.grid_range[1] > self.grid_range[0]:
            raise ValueError(f"grid_range must be increasing, got {tuple(grid_range)!r}")
        self.init_scale = checks.positive_float("init_scale", init_scale, allow_zero=True)
        self.basis = checks.one_of("basis", basis, tuple(BASES))
        lower, upper = bounds if bounds is not None else (None, None)
        self.normalize = BoxNormalizer(self.width[0], lower, upper, target=self.grid_range)
        self.embedding = embedding_from(self.width[0], embedding, self.grid_range)
        layer = BASES[self.basis]
        ins = [self.embedding.n_out, *self.width[1:-1]]
        self.layers = nn.ModuleList(
            layer(a, b, grid, self.k, self.grid_range, self.init_scale) for a, b in zip(ins, self.width[1:])
        )

    @property
    def grid(self) -> int:
        """Current number of grid intervals (the same on every layer)."""
        return self.layers[0].grid

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the first layer sees: x: (batch, width[0]) normalised and embedded -> (batch, embedding.n_out)."""
        h = self.normalize(x)
        return self.embedding(h) if self.embedding.active else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1]).  When x requires grad, every layer keeps a graph to
        it that autograd can differentiate again (derivatives by nested autograd); otherwise the layers
        may take the CPU kernel, whose gradients serve the parameters."""
        h = self.features(x)
        for layer in self.layers:
            h = layer(h, graph_to_input=x.requires_grad)
        return h

    def forward_jet(self, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        """Value, first partials and the second partials ``pairs`` of the output at x: (batch, width[0]).

        One forward pass propagating derivatives layer by layer (see :mod:`kanpde.models.jet`); the
        derivative back end of :class:`kanpde.Fields`.  When x requires grad, the result also
        carries its graph to x (for partials above second order, by autograd from here).
        """
        jet = self.normalize.forward_jet(x, pairs)
        if self.embedding.active:
            jet = self.embedding.forward_jet(jet)
        for layer in self.layers:
            jet = layer.forward_jet(jet, graph_to_input=x.requires_grad)
        return jet

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inputs each layer sees for the network input x: list of (batch, width[l]) (the first: the embedded features)."""
        h = self.features(x)
        seen = []
        for layer in self.layers:
            seen.append(h)
            h = layer(h)
        return seen

    @torch.no_grad()
    def extend_grid(self, grid: int) -> None:
        """Grid extension (paper §2.4): refine every layer to ``grid`` intervals on its current range, keeping the function.

        B-splines: a refinement (G -> m*G) keeps it exactly, other grids by least squares;
        chebyshev: exactly (higher degrees with zero coefficients); rbf: by least squares.
        """
        grid = checks.positive_int("grid", grid)
        for layer in self.layers:
            layer.extend(grid)

    def extension_is_exact(self, old: int, new: int) -> bool:
        """Whether :meth:`extend_grid` from ``old`` to ``new`` keeps the function exactly: for B-splines on free
        knots any larger grid (knots are inserted), on uniform grids a refinement (``new`` a multiple of
        ``old``; exact inside the ranges), for Chebyshev any larger grid, for RBF never."""
        if self.basis == "chebyshev" or self.free_knots:
            return new >= old
        return self.basis == "bspline" and new % old == 0

    @property
    def free_knots(self) -> bool:
        """Whether any layer has non-uniform (free) knots."""
        return any(getattr(layer, "knots", None) is not None for layer in self.layers)

    def _check_knots(self) -> None:
        if self.basis != "bspline":
            raise ValueError(f"knots: only B-spline edges have knots, this KAN has basis={self.basis}")

    @torch.no_grad()
    def use_free_knots(self) -> None:
        """Make every layer's knots free (the same knots and functions, now changeable one by one)."""
        self._check_knots()
        for layer in self.layers:
            if layer.knots is None:
                layer.set_knots(layer.knot_vector().clone(), layer.coef.detach().clone())

    @torch.no_grad()
    def knot_plan(self, grid: int, x: torch.Tensor | None = None, margin: float = 0.05,
                  place: Callable[[int, int, torch.Tensor, int], torch.Tensor] | None = None,
                  extremes: Extremes | None = None) -> list[torch.Tensor]:
        """Knot vectors, one (in, G' + 2k + 1) per layer, that contain the current knots and bring every layer
        to G' = ``grid`` intervals (more, if covering the inputs needs more).

        With samples ``x`` (batch, width[0]), each hidden layer's knots first grow beyond its ends so
        that the interior covers the inputs it sees, widened by ``margin`` of their spread (the first
        layer sees the normalised domain, inside its range by construction).  Each input then gets
        its remaining knots where ``place(layer, input, knots, count)`` puts them (default: an even
        subdivision of the interior, :func:`kanpde.models.knots.subdivision`).  ``extremes``: see
        :meth:`input_ranges`.
        """
        self._check_knots()
        k = self.k
        ranges = self.input_ranges(x, extremes) if x is not None else None
        rows: list[list[torch.Tensor]] = []
        for l, layer in enumerate(self.layers):
            knots = layer.knot_vector()
            layer_rows = []
            for i in range(layer.in_features):
                row = knots[i]
                if ranges is not None and l > 0:
                    lo, hi = float(ranges[l][0][i]), float(ranges[l][1][i])
                    pad = margin * max(hi - lo, 1e-3)
                    row = cover(row, lo - pad, hi + pad, k)
                layer_rows.append(row)
            rows.append(layer_rows)
        target = max(grid, *(len(r) - 2 * k - 1 for layer_rows in rows for r in layer_rows))
        plan = []
        for l, layer_rows in enumerate(rows):
            done = []
            for i, row in enumerate(layer_rows):
                count = target - (len(row) - 2 * k - 1)
                if count:
                    new = place(l, i, row, count) if place is not None else subdivision(row.unsqueeze(0), k, count)[0]
                    row = torch.sort(torch.cat([row, new.to(row)])).values
                done.append(row)
            plan.append(torch.stack(done))
        return plan

    @torch.no_grad()
    def knot_table(self) -> dict[str, torch.Tensor]:
        """Every layer's knots, ``layer<l>``: (in, G + 2k + 1); without an input embedding also the first layer's
        knots in the domain's coordinates, ``domain``: (width[0], G + 2k + 1) (what ``knots.png`` draws)."""
        table = {f"layer{l}": layer.knot_vector().detach().cpu() for l, layer in enumerate(self.layers)}
        if not self.embedding.active:
            n = self.normalize
            table["domain"] = ((table["layer0"] - n.shift.cpu().unsqueeze(1)) / n.scale.cpu().unsqueeze(1)).to(torch.float64)
        return table

    @torch.no_grad()
    def refine_knots(self, plan: Sequence[torch.Tensor]) -> None:
        """Move every layer to the knots of ``plan`` (from :meth:`knot_plan`), keeping the function exactly."""
        for layer, knots in zip(self.layers, plan):
            layer.refine_to(knots)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01, extremes: Extremes | None = None) -> None:
        """Move the grids of the hidden layers to cover the activations seen on the samples ``x: (batch, width[0])``.

        The first layer keeps ``grid_range``: its inputs are the normalised domain, which the
        samples may not reach at the edges.  Each new range is the samples' [min, max] widened by
        ``margin`` of its length; the function is kept by a least-squares refit.  Chebyshev edges
        have no range to move (tanh maps every input into (-1, 1)): for them this does nothing.
        ``extremes``: see :meth:`input_ranges`.
        """
        for layer, (lo, hi) in zip(self.layers[1:], self.input_ranges(x, extremes)[1:]):
            pad = margin * (hi - lo).clamp_min(1e-3)
            layer.update_range(lo - pad, hi + pad)

    @torch.no_grad()
    def input_ranges(self, x: torch.Tensor, extremes: Extremes | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the smallest and largest value (in,) each of its inputs takes on the samples x: (batch, width[0]).
        ``extremes(lo, hi)`` combines them with other processes' (data-parallel training: the min and max over
        the ranks, :meth:`kanpde.training.distributed.Shards.extremes`), so that every rank moves its grids alike."""
        ranges = []
        for h in self.layer_inputs(x):
            lo, hi = h.min(dim=0).values, h.max(dim=0).values
            ranges.append((lo, hi) if extremes is None else extremes(lo, hi))
        return ranges

    def n_params(self) -> int:
        """Number of trained parameters: per numeric edge G + k coefficients plus two scales (whatever the
        basis), per symbolic edge its free (a, b, c, d); pruned edges count nothing."""
        return sum(layer.n_params() for layer in self.layers)

    def edge_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every edge's output on the samples x: (batch, width[0]) -> per layer (batch, width[l], width[l+1])."""
        h = self.features(x)
        acts = []
        for layer in self.layers:
            acts.append(layer.edges(h, 0)[0])
            h = acts[-1].sum(1)
        return acts

    def regularization(self, x: torch.Tensor, l1: float = 1.0, entropy: float = 1.0) -> torch.Tensor:
        """The KAN paper's sparsity penalty (§2.5.1) on the samples x: (batch, width[0]).

        With |phi|_1 the mean of |phi(x)| over the batch for each edge and |Phi|_1 its sum over a
        layer's edges: ``l1 · sum_l |Phi_l|_1 + entropy · sum_l S(Phi_l)``, where S is the entropy of
        the shares |phi|_1 / |Phi|_1.  The L1 term shrinks edges; the entropy term favours few large ones.
        """
        return sparsity(self.edge_sizes(x), l1, entropy)

    def edge_sizes(self, x: torch.Tensor, count: int | None = None) -> list[torch.Tensor]:
        """Per layer, each edge's |phi|_1 (in, out): the sum of |phi(x)| over the samples x: (batch, width[0]),
        divided by ``count`` (default: the batch; data-parallel: all ranks' points, so that the ranks' values add up)."""
        n = x.shape[0] if count is None else count
        return [act.abs().sum(0) / n for act in self.edge_activations(x)]

    def fix_symbolic(self, layer: int, i: int, o: int, name: str, params: tuple[float, float, float, float] | None = None) -> None:
        """Make edge i -> o of ``layer`` compute c·f(a·x + b) + d (see :meth:`EdgeLayer.fix_symbolic`); rebuild the optimiser after."""
        self.layers[layer].fix_symbolic(i, o, name, params)

    def is_symbolic(self) -> bool:
        """Whether every edge is symbolic or pruned (the network is then a closed-form formula)."""
        return all(not bool(layer.mask.any()) for layer in self.layers)

    def keep_nodes(self, keep: Sequence[torch.Tensor]) -> None:
        """Keep only the hidden nodes ``keep[l]`` (indices) of hidden layer l, dropping their edges; in place."""
        if len(keep) != len(self.width) - 2:
            raise ValueError(f"keep_nodes needs one index list per hidden layer ({len(self.width) - 2}), got {len(keep)}")
        sets = [torch.arange(self.layers[0].in_features), *[torch.as_tensor(k, dtype=torch.long) for k in keep], torch.arange(self.width[-1])]
        for l, k in enumerate(sets[1:-1], start=1):
            if len(k) == 0:
                raise ValueError(f"keep_nodes: hidden layer {l} would have no node left")
        self.layers = nn.ModuleList(layer.select(a, b) for layer, a, b in zip(self.layers, sets[:-1], sets[1:]))
        self.width = [self.width[0], *[len(k) for k in sets[1:]]]

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model's architecture in its current state (grid included)."""
        lower, upper = self.normalize.bounds()
        return {"width": list(self.width), "grid": self.grid, "k": self.k, "bounds": (lower, upper),
                "grid_range": self.grid_range, "init_scale": self.init_scale, "basis": self.basis,
                "embedding": self.embedding.spec()}


def kan_of(model: nn.Module, purpose: str = "interpretation") -> KAN:
    """The KAN ``model`` is or wraps (a hard-constraint wrapper holds its network as ``net``); a TypeError naming
    the model and ``purpose`` otherwise (an MLP has no edges to read)."""
    seen = model
    while not isinstance(seen, KAN):
        inner = seen._modules.get("net") if isinstance(seen, nn.Module) else None
        if inner is None:
            raise TypeError(f"{purpose} needs a KAN; got {type(model).__name__}")
        seen = inner
    return seen
