"""Kolmogorov–Arnold Network with B-spline edges on uniform grids (Liu et al. 2024, arXiv 2404.19756).

Each edge (i -> o) carries phi(x) = scale_base * silu(x) + scale_sp * spline(x); a node sums its
incoming edges.  The spline basis is evaluated in closed form for the whole batch (``basis.py``)
and contracted with the coefficients in one matrix product per layer.  :class:`KAN` can instead
build its layers with Chebyshev (``chebyshev.py``) or Gaussian RBF (``rbf.py``) edges, with the
same number of parameters (``basis``).
"""
from __future__ import annotations

from math import factorial
from typing import Any, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from kanpde import checks
from kanpde.models.jet import Jet, Pairs, silu_derivatives
from kanpde.models import native
from kanpde.models.basis import (bspline_cells, cell_polynomials, falling_factorial, pad_coefficients, padded_bspline_basis,
                    padded_bspline_derivatives, power_derivatives, uniform_bspline_basis)
from kanpde.models.chebyshev import ChebyshevKANLayer
from kanpde.models.edge import EdgeLayer
from kanpde.models.embedding import embedding_from
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
    def forward(ctx, h, Q, lo, step, G: int, k: int, order: int):  # type: ignore[override]
        cell, t = bspline_cells(h, lo, step, G, k)
        xi = (t * step).unsqueeze(-1)  # (batch, in, 1)
        rows = cell + (G + 2 * k + 1) * torch.arange(h.shape[1], device=h.device)
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
        return dh, dQ, None, None, None, None, None


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

    Args:
        in_features, out_features: layer widths.
        grid: G, number of grid intervals on each input's range.
        k: spline degree (3 = cubic).
        grid_range: initial range of every input's grid.
        init_scale: standard deviation of the initial spline coefficients.
    """

    def __init__(self, in_features: int, out_features: int, grid: int = 5, k: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), init_scale: float = 0.1) -> None:
        super().__init__(in_features, out_features, grid, k, grid_range, init_scale)
        lo, hi = self.initial_range
        dtype = self.coef.dtype
        self.register_buffer("grid_lo", torch.full((in_features,), lo, dtype=dtype))
        self.register_buffer("grid_h", torch.full((in_features,), (hi - lo) / grid, dtype=dtype))

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, in, G + k) B-spline basis values."""
        return uniform_bspline_basis(x, self.grid_lo, self.grid_h, self.grid, self.k)

    def forward_numeric(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, out)."""
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
        if not graph_to_input:
            Q = Q.flatten(0, 1).flatten(1)  # (in*(G+2k+1), (k+2)*out): one row per (input, cell)
            return _EdgeDerivatives.apply(h, Q, self.grid_lo, self.grid_h, self.grid, self.k, order)
        cell, t = bspline_cells(h, self.grid_lo, self.grid_h, self.grid, self.k)
        X = torch.cat([power_derivatives(t * self.grid_h, self.k, order),
                       silu_derivatives(h, order).unsqueeze(-1)], dim=-1)
        return (X @ Q.flatten(0, 1)[cell + Q.shape[1] * torch.arange(self.in_features, device=h.device)]).unbind(2)

    def cell_coefficients(self) -> torch.Tensor:
        """(in, G + 2k + 1, k + 2, out): on cell c of input i's padded grid, edge i -> o is
        sum_p Q[i, c, p, o] · xi**p + Q[i, c, k+1, o] · silu(h), xi the offset from the cell's left knot.
        The last cell (outside the grid) has only the silu term.  Differentiable in the parameters."""
        base, sp = self.scales()
        P = cell_polynomials(self.coef * sp.unsqueeze(1), self.k)  # (in, G+2k+1, k+1, out), in powers of t
        P = P * self.grid_h[:, None, None, None] ** -torch.arange(self.k + 1, device=P.device, dtype=P.dtype)[:, None]  # powers of xi = t·h
        return torch.cat([P, base[:, None, None, :].expand(-1, P.shape[1], 1, -1)], dim=2)  # silu's scale as one more row

    def forward_jet(self, jet: Jet, graph_to_input: bool = False) -> Jet:
        """See :meth:`EdgeLayer.forward_jet`.  On the CPU the compiled kernel (:mod:`.native`) does the
        whole layer in one loop over the points, where it is available and applies: numeric and pruned
        edges only, no graph to the inputs asked for (it differentiates once), and not inside
        ``torch.compile``, which traces the torch operations instead."""
        if (graph_to_input or (self.symbolic is not None and self.symbolic.groups) or self.k > native.MAX_K
                or torch.compiler.is_compiling() or not native.available(jet.value, self.coef)):
            return super().forward_jet(jet, graph_to_input)
        # the kernel works batch last; its outputs' transposes are the jet, and the next layer's
        # transposes of those are free
        F = jet.first.transpose(1, 2).expand(-1, -1, jet.value.shape[0])
        S = None if jet.second is None else jet.second.transpose(1, 2)
        value, first, second = native.LayerJet.apply(jet.value.t(), F, S, self.cell_coefficients(),
                                                     self.grid_lo, self.grid_h, self.k, jet.pairs)
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
        if (self.symbolic is not None and self.symbolic.groups) or J.requires_grad:
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
        """(in,) left and right ends of each input's grid."""
        return self.grid_lo, self.grid_lo + self.grid * self.grid_h

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
        old = torch.einsum(
            "bim,imo->bio",
            uniform_bspline_basis(z, self.grid_lo.to(f64), self.grid_h.to(f64), self.grid, self.k),
            self.coef.to(f64),
        )  # (n_fit, in, out)
        new_h = (hi - lo).to(f64) / grid
        A = uniform_bspline_basis(z, lo.to(f64), new_h, grid, self.k).transpose(0, 1)  # (in, n_fit, G'+k)
        coef = torch.linalg.lstsq(A.cpu(), old.transpose(0, 1).cpu(), driver="gelsd").solution  # (in, G'+k, out)
        self.grid = grid
        self.grid_lo.copy_(lo)
        self.grid_h.copy_(new_h.to(self.grid_h.dtype))
        # lstsq returns column-major results: keep the parameter contiguous (L-BFGS views its gradient flat)
        self.coef = nn.Parameter(coef.to(device=self.coef.device, dtype=self.coef.dtype).contiguous())


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
        """x: (batch, width[0]) -> (batch, width[-1])."""
        h = self.features(x)
        for layer in self.layers:
            h = layer(h)
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
        """Whether :meth:`extend_grid` from ``old`` to ``new`` keeps the function exactly: for B-splines a
        refinement (``new`` a multiple of ``old``), for Chebyshev any larger grid, for RBF never."""
        if self.basis == "chebyshev":
            return new >= old
        return self.basis == "bspline" and new % old == 0

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move the grids of the hidden layers to cover the activations seen on the samples ``x: (batch, width[0])``.

        The first layer keeps ``grid_range``: its inputs are the normalised domain, which the
        samples may not reach at the edges.  Each new range is the samples' [min, max] widened by
        ``margin`` of its length; the function is kept by a least-squares refit.  Chebyshev edges
        have no range to move (tanh maps every input into (-1, 1)): for them this does nothing.
        """
        seen = self.layer_inputs(x)
        for layer, h in zip(self.layers[1:], seen[1:]):
            lo, hi = h.min(dim=0).values, h.max(dim=0).values
            pad = margin * (hi - lo).clamp_min(1e-3)
            layer.update_range(lo - pad, hi + pad)

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
        total = x.new_zeros(())
        for act in self.edge_activations(x):
            size = act.abs().mean(0)  # (in, out)
            layer_l1 = size.sum()
            share = size / layer_l1.clamp_min(torch.finfo(size.dtype).tiny)
            total = total + l1 * layer_l1 - entropy * (share * torch.log(share.clamp_min(1e-30))).sum()
        return total

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
