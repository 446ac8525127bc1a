"""KAN layer with Gaussian radial-basis edges, as in FastKAN: each edge is a sum of Gaussians
exp(-((x - c_m)/w)²) on G + k centres c_m spaced uniformly over the layer's grid range, both
ends included, with the width w equal to the centre spacing (FastKAN's choice), plus silu as for
every basis.

FastKAN also puts a LayerNorm before each layer; this one does not: a LayerNorm mixes all inputs
of a layer, so an edge would no longer be a function of its own input alone (the per-edge
structure that the derivative pass and the grid changes rely on).

The derivatives are closed-form: d^d/dx^d exp(-u²) = (-1)^d H_d(u) exp(-u²) / w^d with
u = (x - c)/w and the Hermite polynomials H_0 = 1, H_1 = 2u, H_{d+1} = 2u H_d - 2d H_{d-1}
(evaluated as P_d = (-1/w)^d H_d(u) directly).
"""
from __future__ import annotations

import torch
from torch import nn

from kanpde import checks
from kanpde.models.edge import DenseEdgeLayer


def gaussian_derivatives(x: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, n_basis: int, order: int) -> list[torch.Tensor]:
    """Gaussians on ``n_basis`` centres lo + m·step (m = 0 .. n_basis-1), width ``step``, and their
    first ``order`` derivatives at x: (batch, n_in) -> ``order+1`` tensors (n_in, n_basis, batch).

    lo, step: (n_in,) per input."""
    centres = lo.unsqueeze(-1) + step.unsqueeze(-1) * torch.arange(n_basis, dtype=x.dtype, device=x.device)
    inv_w = (1 / step)[:, None, None]  # (n_in, 1, 1)
    u = (x.t().contiguous().unsqueeze(1) - centres.unsqueeze(-1)) * inv_w  # (n_in, n_basis, batch)
    g = torch.exp(-u * u)
    # P_d = (-1/w)^d H_d(u): P_0 = 1, P_1 = v = -2u/w, P_{d+1} = v P_d - 2d/w² P_{d-1}
    out = [g]
    if order >= 1:
        v = u * (-2 * inv_w)
        inv_w2 = inv_w * inv_w
        P = [None, v]  # P_0 = 1
        for d in range(1, order):
            lower = -2 * d * inv_w2 if P[d - 1] is None else -2 * d * inv_w2 * P[d - 1]
            P.append(torch.addcmul(lower, v, P[d]))
        out += [g * p for p in P[1:]]
    return out


class RBFKANLayer(DenseEdgeLayer):
    """A KAN layer whose edges are Gaussian RBF series: phi(x) = scale_base · silu(x) +
    scale_sp · sum_{m < G+k} coef[i, m, o] · exp(-((x - c_m)/w)²).

    Args as for :class:`~kanpde.models.kan.KANLayer`: G + k centres on ``grid_range`` (both ends
    included, spacing (hi - lo)/(G + k - 1)), and width w = that spacing.
    """

    def __init__(self, in_features: int, out_features: int, grid: int = 5, k: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), init_scale: float = 0.1) -> None:
        super().__init__(in_features, out_features, grid, k, grid_range, init_scale)
        lo, hi = self.initial_range
        dtype = self.coef.dtype
        self.register_buffer("grid_lo", torch.full((in_features,), lo, dtype=dtype))
        self.register_buffer("grid_step", torch.full((in_features,), (hi - lo) / (self.n_basis - 1), dtype=dtype))

    def basis_derivatives(self, h: torch.Tensor, order: int) -> tuple[list[torch.Tensor], None]:
        """h: (batch, in) -> ``order+1`` tensors (in, G+k, batch), the d-th derivative of every Gaussian at h,
        and None: the Gaussians live in x itself (see :meth:`DenseEdgeLayer.basis_derivatives`)."""
        return gaussian_derivatives(h, self.grid_lo, self.grid_step, self.n_basis, order), None

    def grid_ranges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(in,) first and last centre of each input."""
        return self.grid_lo, self.grid_lo + (self.n_basis - 1) * self.grid_step

    @torch.no_grad()
    def refit(self, grid: int, lo: torch.Tensor | None = None, hi: torch.Tensor | None = None, n_fit: int | None = None) -> None:
        """Move to ``grid + k`` centres on ``[lo, hi]`` per input (default: the current range), keeping the function
        as well as the new basis can: least squares of the old edges on a dense uniform sample of the new range.

        Gaussians of one width do not span those of another, so even a refinement on the same
        range is a (close) approximation, not the same function.
        """
        grid = checks.positive_int("grid", grid)
        old_lo, old_hi = self.grid_ranges()
        lo = old_lo.clone() if lo is None else lo.to(old_lo)
        hi = old_hi.clone() if hi is None else hi.to(old_hi)
        if not bool((hi > lo).all()):
            raise ValueError(f"refit: new grid ranges must be increasing, got lo={lo.tolist()} hi={hi.tolist()}")
        n_new = grid + self.k
        n_fit = n_fit or max(256, 8 * n_new)
        f64 = torch.float64
        s = torch.linspace(0.0, 1.0, n_fit, dtype=f64, device=lo.device)
        z = lo.to(f64) + s[:, None] * (hi - lo).to(f64)  # (n_fit, in)
        B_old = gaussian_derivatives(z, self.grid_lo.to(f64), self.grid_step.to(f64), self.n_basis, 0)[0]  # (in, G+k, n_fit)
        old = B_old.transpose(1, 2) @ self.coef.to(f64)  # (in, n_fit, out)
        new_step = (hi - lo).to(f64) / (n_new - 1)
        A = gaussian_derivatives(z, lo.to(f64), new_step, n_new, 0)[0].transpose(1, 2)  # (in, n_fit, n_new)
        coef = torch.linalg.lstsq(A.cpu(), old.cpu(), driver="gelsd").solution  # (in, n_new, out)
        self.grid = grid
        self.grid_lo.copy_(lo)
        self.grid_step.copy_(new_step.to(self.grid_step.dtype))
        self.coef = nn.Parameter(coef.to(device=self.coef.device, dtype=self.coef.dtype).contiguous())
