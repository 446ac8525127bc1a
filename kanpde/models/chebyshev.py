"""KAN layer with Chebyshev-polynomial edges, as in ChebyKAN: each edge input is squashed by
z = tanh(x) into (-1, 1) and the edge is a Chebyshev series sum_n c_n T_n(z), n = 0 .. G+k-1
(the same G + k coefficients per edge as a B-spline edge, plus silu as for every basis).

The T_n and their derivatives in z come from the three-term recurrences
T_{n+1} = 2z T_n - T_{n-1}, T'_{n+1} = 2T_n + 2z T'_n - T'_{n-1}, T''_{n+1} = 4T'_n + 2z T''_n - T''_{n-1}
(generally T^(d)_{n+1} = 2d T^(d-1)_n + 2z T^(d)_n - T^(d)_{n-1}), then the chain rule through
z = tanh(x): z' = 1 - z², z'' = -2z z', z''' = z'(6z² - 2), applied to the series (after the
contraction with the coefficients) rather than to every basis function.
"""
from __future__ import annotations

import torch
from torch import nn

from kanpde import checks
from kanpde.models.edge import DenseEdgeLayer


def chebyshev_derivatives(z: torch.Tensor, n_basis: int, order: int, dim: int = -1) -> list[torch.Tensor]:
    """T_0 .. T_{n_basis-1} and their first ``order`` derivatives at z: ``order+1`` tensors, each z's shape with
    a new axis of length n_basis (the degree) inserted at ``dim``."""
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    T = [[one, z][:n_basis]] + [[zero, one if d == 1 else zero][:n_basis] for d in range(1, order + 1)]
    two_z = 2 * z
    for n in range(1, n_basis - 1):
        for d in range(order + 1):
            nxt = torch.addcmul(-T[d][n - 1], two_z, T[d][n])
            T[d].append(torch.add(nxt, T[d - 1][n], alpha=2 * d) if d else nxt)
    return [torch.stack(t, dim=dim) for t in T]


class ChebyshevKANLayer(DenseEdgeLayer):
    """A KAN layer whose edges are Chebyshev series in tanh(x): phi(x) = scale_base · silu(x) +
    scale_sp · sum_{n < G+k} coef[i, n, o] · T_n(tanh(x)).

    Args as for :class:`~kanpde.models.kan.KANLayer`; ``grid`` and ``k`` only set the number of
    terms (G + k, degrees 0 .. G+k-1).  ``grid_range`` is accepted for a common signature and not
    used: tanh maps every input into (-1, 1), so the basis has no range to place or move.
    """

    def basis_derivatives(self, h: torch.Tensor, order: int) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """h: (batch, in) -> T_n and its first ``order`` derivatives in z = tanh(h), each (in, G+k, batch),
        and the x-derivatives of z (see :meth:`DenseEdgeLayer.basis_derivatives`)."""
        z = torch.tanh(h.t().contiguous())  # (in, batch)
        T = chebyshev_derivatives(z, self.n_basis, order, dim=1)
        z = z.unsqueeze(1)
        z1 = 1 - z * z
        return T, [z1, -2 * z * z1, z1 * (6 * z * z - 2)][:order]

    @torch.no_grad()
    def extend(self, grid: int) -> None:
        """Use ``grid + k`` terms: higher degrees get zero coefficients, so the function is kept exactly.

        A smaller ``grid`` drops the highest degrees (the truncated series, not the same function)."""
        grid = checks.positive_int("grid", grid)
        n_new = grid + self.k
        coef = self.coef.detach()
        if n_new >= coef.shape[1]:
            coef = torch.cat([coef, coef.new_zeros(coef.shape[0], n_new - coef.shape[1], coef.shape[2])], dim=1)
        else:
            coef = coef[:, :n_new].clone()
        self.grid = grid
        self.coef = nn.Parameter(coef)

    def update_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        """Nothing to do: tanh maps the whole real line into (-1, 1), where the Chebyshev basis lives,
        so no input ever falls outside the basis (grid updates are for bases on a finite range)."""

    def refit(self, grid: int, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None, n_fit: int | None = None) -> None:
        """Grid extension (:meth:`extend`); a Chebyshev edge has no range, so ``lo`` and ``hi`` must be None."""
        if lo is not None or hi is not None:
            raise ValueError("chebyshev edges have no grid range to move (tanh maps every input into (-1, 1)); refit takes only grid")
        self.extend(grid)
