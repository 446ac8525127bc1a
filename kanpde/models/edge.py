"""What every KAN layer shares, whatever basis its edges use.

Each edge (i -> o) carries phi(x) = scale_base · silu(x) + scale_sp · sum_b coef[i, b, o] · B_b(x),
with the same number of basis functions B_b per edge (G + k) for every basis, so that networks of
the same (width, grid, k) have the same parameters.  A layer supplies its edges' values and
derivatives at their inputs (:meth:`EdgeLayer.edge_derivatives`); :meth:`EdgeLayer.forward_jet`
composes them with the derivatives of the layer's input by the chain rule.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from kanpde import checks
from kanpde.models.jet import Jet, silu_derivatives
from kanpde.models.symbolic_edges import SymbolicEdges


class EdgeLayer(nn.Module, ABC):
    """A KAN layer of ``in_features * out_features`` edges, each ``G + k`` basis functions plus silu.

    Subclasses supply :meth:`basis`, :meth:`forward_numeric`, :meth:`edge_derivatives` and the grid
    changes (:meth:`extend`, :meth:`update_range`).

    An edge can also be symbolic, c·f(a·x + b) + d (:meth:`fix_symbolic`, :mod:`.symbolic`), or
    pruned (:meth:`remove_edge`): ``mask[i, o]`` is 1 where the numeric edge is on, 0 where it is not.

    Args:
        in_features, out_features: layer widths.
        grid: G; with ``k`` it sets the number of basis functions per edge, G + k.
        k: spline degree for B-splines; for the other bases only part of the count G + k.
        grid_range: initial range of every input's basis (validated here; a basis without a range ignores it).
        init_scale: standard deviation of the initial basis coefficients.
    """

    def __init__(self, in_features: int, out_features: int, grid: int = 5, k: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), init_scale: float = 0.1) -> None:
        super().__init__()
        lo, hi = float(grid_range[0]), float(grid_range[1])
        if not hi > lo:
            raise ValueError(f"grid_range must be increasing, got {grid_range!r}")
        self.initial_range = (lo, hi)
        self.in_features = checks.positive_int("in_features", in_features)
        self.out_features = checks.positive_int("out_features", out_features)
        self.grid = checks.positive_int("grid", grid)
        self.k = checks.positive_int("k", k)
        # the same parameters, drawn in the same order, for every basis
        n_in, n_out = self.in_features, self.out_features
        self.coef = nn.Parameter(init_scale * torch.randn(n_in, self.grid + self.k, n_out))
        self.scale_base = nn.Parameter((2 * torch.rand(n_in, n_out) - 1) / n_in**0.5)
        self.scale_sp = nn.Parameter(torch.ones(n_in, n_out) / n_in**0.5)
        self.register_buffer("mask", torch.ones(n_in, n_out))
        self.symbolic: SymbolicEdges | None = None

    def scales(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(in, out) silu and basis scales with the numeric mask applied: zero on symbolic and pruned edges."""
        return self.scale_base * self.mask, self.scale_sp * self.mask

    @abstractmethod
    def forward_numeric(self, x: torch.Tensor, graph_to_input: bool = True) -> torch.Tensor:
        """x: (batch, in) -> (batch, out): the numeric edges' sum at each output.  ``graph_to_input=False``
        allows a path whose gradient to x can be taken only once (enough for parameter gradients)."""

    def forward(self, x: torch.Tensor, graph_to_input: bool = True) -> torch.Tensor:
        """x: (batch, in) -> (batch, out).  ``graph_to_input``: keep a graph to x that autograd can
        differentiate again (nested derivatives of the network's input); False when none is needed."""
        y = self.forward_numeric(x, graph_to_input)
        if self.symbolic is not None and self.symbolic.groups:
            y = y + self.symbolic.derivatives(x, 0)[0].sum(1)
        return y

    def edges(self, h: torch.Tensor, order: int = 0, graph_to_input: bool = False) -> tuple[torch.Tensor, ...]:
        """Like :meth:`edge_derivatives`, numeric and symbolic edges together: ``order + 1`` tensors (batch, in, out)."""
        edge = self.edge_derivatives(h, order, graph_to_input)
        if self.symbolic is not None and self.symbolic.groups:
            edge = tuple(e + s for e, s in zip(edge, self.symbolic.derivatives(h, order)))
        return edge

    def fix_symbolic(self, i: int, o: int, name: str, params: tuple[float, float, float, float] | None = None) -> None:
        """Make edge i -> o compute c·f(a·x + b) + d with f the library function ``name``, (a, b, c, d) = ``params``.
        The numeric edge is switched off.  A new parameter may appear: rebuild the optimiser after this."""
        self._check_edge(i, o)
        if self.symbolic is None:
            self.symbolic = SymbolicEdges(self.in_features, self.out_features).to(self.coef)
        self.symbolic.set(i, o, name, params)
        self.mask[i, o] = 0.0

    def unfix_symbolic(self, i: int, o: int) -> None:
        """Return edge i -> o to its numeric form (its coefficients as they were)."""
        self._check_edge(i, o)
        if self.symbolic is not None:
            self.symbolic.set(i, o, None)
        self.mask[i, o] = 1.0

    def remove_edge(self, i: int, o: int) -> None:
        """Prune edge i -> o: it computes 0 from now on."""
        self._check_edge(i, o)
        if self.symbolic is not None:
            self.symbolic.set(i, o, None)
        self.mask[i, o] = 0.0

    def edge_kind(self, i: int, o: int) -> str:
        """``numeric``, ``pruned`` or the symbolic edge's function name."""
        name = None if self.symbolic is None else self.symbolic.names[i][o]
        return name if name is not None else "numeric" if self.mask[i, o] > 0 else "pruned"

    def _check_edge(self, i: int, o: int) -> None:
        if not (0 <= i < self.in_features and 0 <= o < self.out_features):
            raise IndexError(f"edge {i} -> {o} does not exist in a layer of {self.in_features} inputs and {self.out_features} outputs")

    def n_params(self) -> int:
        """Trained numbers: G + k + 2 per numeric edge, the free ones of (a, b, c, d) per symbolic edge."""
        numeric = int(self.mask.count_nonzero()) * (self.n_basis + 2)
        return numeric + (0 if self.symbolic is None else self.symbolic.n_params())

    def select(self, inputs: torch.Tensor, outputs: torch.Tensor) -> "EdgeLayer":
        """A new layer of only the edges from ``inputs`` to ``outputs`` (index tensors), the same functions on them."""
        new = type(self)(len(inputs), len(outputs), self.grid, self.k, self.initial_range).to(self.coef)
        if self.symbolic is not None:
            new.symbolic = SymbolicEdges(len(inputs), len(outputs)).to(self.coef)
        state = {}
        for key, value in self.state_dict().items():
            if key.endswith("_extra_state"):
                value = {"names": [[value["names"][i][o] for o in outputs.tolist()] for i in inputs.tolist()]}
            elif key == "knots":  # (in, n_knots): one knot vector per input
                value = value.index_select(0, inputs.to(value.device))
            else:  # every tensor is (in, ...); coef (in, G + k, out), the symbolic ones (in, out, 4), the rest (in, out)
                value = value.index_select(0, inputs.to(value.device))
                if value.dim() >= 2:
                    value = value.index_select(1 if key.startswith("symbolic.") else -1, outputs.to(value.device))
            state[key] = value
        new.load_state_dict(state)
        return new

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        # checkpoints written before edges could be pruned have no mask: every edge numeric
        state_dict.setdefault(prefix + "mask", torch.ones(self.in_features, self.out_features))
        if self.symbolic is None and prefix + "symbolic.affine" in state_dict:
            self.symbolic = SymbolicEdges(self.in_features, self.out_features).to(self.coef)
        if hasattr(self, "knots"):  # B-spline layers: free knots where the saved layer had them, uniform where not
            saved = state_dict.get(prefix + "knots")
            self.knots = None if saved is None else torch.empty_like(saved, dtype=self.coef.dtype, device=self.coef.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def n_basis(self) -> int:
        """Basis functions per edge: G + k."""
        return self.grid + self.k

    @abstractmethod
    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, in, G + k) basis values."""

    def edge_splines(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled basis-series part of every edge, sum_b coef[i, b, o] · B_b(x_i). x: (batch, in) -> (batch, in, out)."""
        return torch.einsum("bim,imo->bio", self.basis(x), self.coef)

    @abstractmethod
    def edge_derivatives(self, h: torch.Tensor, order: int, graph_to_input: bool = False) -> tuple[torch.Tensor, ...]:
        """Every edge's value and first ``order`` derivatives at its input, h: (batch, in) ->
        ``order+1`` tensors (batch, in, out); ``[d][b, i, o]`` is the d-th derivative of edge i -> o at h[b, i].

        With ``graph_to_input`` the result must stay differentiable in ``h`` to higher orders."""

    def input_jet(self, jet: Jet, graph_to_input: bool = False) -> Jet:
        """The layer on the network's inputs, whose jet has the same first partials J at every point
        and no second ones: first = J · E', second = (J_a J_b) · E'', matrix products over the inputs.
        A basis may override it with a cheaper route to the same numbers."""
        edge = self.edges(jet.value, 2 if jet.pairs else 1, graph_to_input)
        first = torch.einsum("dxi,bio->dbo", jet.first, edge[1])
        second = torch.einsum("pxi,bio->pbo", jet.first_products(), edge[2]) if jet.pairs else None
        return Jet(edge[0].sum(1), first, second, jet.pairs)

    def forward_jet(self, jet: Jet, graph_to_input: bool = False) -> Jet:
        """The layer applied to a jet of its inputs (values and input derivatives), by the chain rule:
        a node sums its edges as :meth:`Jet.elementwise` describes, each with its own derivatives."""
        if jet.first.shape[1] == 1 and jet.second is None:
            return self.input_jet(jet, graph_to_input)
        order = 2 if jet.pairs else 1
        second = None
        edge = self.edges(jet.value, order, graph_to_input)
        first = (jet.first.unsqueeze(-1) * edge[1]).sum(2)
        if jet.pairs:
            chained = jet.first_products().unsqueeze(-1) * edge[2]
            if jet.second is not None:
                chained = chained + jet.second.unsqueeze(-1) * edge[1]
            second = chained.sum(2)
        return Jet(edge[0].sum(1), first, second, jet.pairs)

    def extend(self, grid: int) -> None:
        """Grid extension: G + k basis functions become ``grid`` + k, keeping the function (as far as the basis allows)."""
        self.refit(grid)

    @torch.no_grad()
    def extension_map(self, grid: int) -> torch.Tensor:
        """(in, grid + k, G + k): the linear map :meth:`extend` applies to each input's coefficients,
        new coef[i] = map[i] @ coef[i] (what carries Adam's moments across a grid extension)."""
        return self.change_map(lambda layer: layer.extend(grid))

    @torch.no_grad()
    def change_map(self, change: Callable[["EdgeLayer"], None]) -> torch.Tensor:
        """(in, G' + k, G + k): the linear map ``change(layer)`` applies to each input's coefficients.

        Found by changing a copy whose coefficients are the identity (one output per basis function),
        so it is exactly the map of whatever fit or knot change the basis uses."""
        probe = copy.deepcopy(self)
        eye = torch.eye(self.n_basis, dtype=self.coef.dtype, device=self.coef.device)
        probe.coef = nn.Parameter(eye.expand(self.in_features, -1, -1).clone())
        change(probe)
        return probe.coef.detach()

    def update_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Move each input's basis onto ``[lo[i], hi[i]]``, keeping the function by a least-squares refit."""
        self.refit(self.grid, lo, hi)

    @abstractmethod
    def refit(self, grid: int, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None, n_fit: int | None = None) -> None:
        """Move to ``grid`` (and, where the basis has one, the range [lo, hi]), keeping the function as far as the basis allows."""

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, grid={self.grid}, k={self.k}"


class DenseEdgeLayer(EdgeLayer):
    """An edge layer whose basis functions are all evaluated at every point (Chebyshev, RBF).

    The basis may live in a variable s(x) (Chebyshev: s = tanh x; RBF: s = x).  Subclasses supply
    :meth:`basis_derivatives`, the basis and its derivatives in s and the derivatives of s; they are
    contracted with the coefficients (one batched matrix product per order), and only then is the
    chain rule through s applied, on tensors of the edges rather than of the basis.  Everything is
    ordinary autograd: derivatives in ``h`` (the parameter gradient's chain through later layers,
    and partials above second order) come from autograd, so no extra order is computed and
    ``graph_to_input`` changes nothing.
    """

    @abstractmethod
    def basis_derivatives(self, h: torch.Tensor, order: int) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """h: (batch, in) -> (B, S): ``B[d]`` (in, G + k, batch) the d-th derivatives in s of every basis
        function, ``[d][i, m, b]`` at s(h[b, i]), d = 0 .. order; ``S[d - 1]`` (in, 1, batch) the d-th
        derivative of s in x, d = 1 .. order, or None where s = x.

        Batch last: products that broadcast one value per point then run along contiguous memory,
        and the contraction with the coefficients is a batched matrix product without a copy."""

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis_derivatives(x, 0)[0][0].permute(2, 0, 1)

    def _coef_t(self, scale_sp: torch.Tensor) -> torch.Tensor:
        """(in, out, G + k): the scaled coefficients, transposed for ``coef_t @ basis``."""
        return (self.coef * scale_sp.unsqueeze(1)).transpose(1, 2)

    def forward_numeric(self, x: torch.Tensor, graph_to_input: bool = True) -> torch.Tensor:
        """x: (batch, in) -> (batch, out); ordinary autograd, so ``graph_to_input`` changes nothing."""
        base, sp = self.scales()
        B = self.basis_derivatives(x, 0)[0][0]  # (in, G+k, batch)
        return torch.bmm(self._coef_t(sp), B).sum(0).t() + F.silu(x) @ base

    def edge_derivatives(self, h: torch.Tensor, order: int, graph_to_input: bool = False) -> tuple[torch.Tensor, ...]:
        """See :meth:`EdgeLayer.edge_derivatives`; ``graph_to_input`` is not needed here (see the class)."""
        if not 0 <= order <= 3:
            raise ValueError(f"edge derivatives are implemented up to order 3, got {order}")
        B, S = self.basis_derivatives(h, order)
        base, sp = self.scales()
        W = self._coef_t(sp)
        E = [torch.bmm(W, b) for b in B]  # (in, out, batch): derivatives in s
        if S is not None and order >= 1:  # Faa di Bruno: derivatives in x
            s1 = S[0]
            chained = [E[0], E[1] * s1]
            if order >= 2:
                chained.append(torch.addcmul(E[2] * (s1 * s1), E[1], S[1]))
            if order >= 3:
                chained.append(E[3] * (s1 * s1 * s1) + 3 * E[2] * (s1 * S[1]) + E[1] * S[2])
            E = chained
        silu = silu_derivatives(h, order).unsqueeze(-1)  # (batch, in, order+1, 1)
        return tuple(torch.addcmul(e.permute(2, 0, 1), silu[:, :, d], base) for d, e in enumerate(E))
