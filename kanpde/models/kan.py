"""Kolmogorov–Arnold Network with B-spline edges on uniform grids (Liu et al. 2024, arXiv 2404.19756).

Each edge (i -> o) carries phi(x) = scale_base * silu(x) + scale_sp * spline(x); a node sums its
incoming edges.  The spline basis is evaluated in closed form for the whole batch (``basis.py``)
and contracted with the coefficients in one matrix product per layer.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import checks
from .basis import pad_coefficients, padded_bspline_basis, uniform_bspline_basis
from .normalize import BoxNormalizer


class KANLayer(nn.Module):
    """One KAN layer of ``in_features * out_features`` learnable activation functions.

    Args:
        in_features, out_features: layer widths.
        grid: G, number of grid intervals on each input's range.
        k: spline degree (3 = cubic).
        grid_range: initial range of every input's grid.
        init_scale: standard deviation of the initial spline coefficients.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid: int = 5,
        k: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features = checks.positive_int("in_features", in_features)
        self.out_features = checks.positive_int("out_features", out_features)
        self.grid = checks.positive_int("grid", grid)
        self.k = checks.positive_int("k", k)
        lo, hi = float(grid_range[0]), float(grid_range[1])
        if not hi > lo:
            raise ValueError(f"grid_range must be increasing, got {grid_range!r}")
        dtype = torch.get_default_dtype()
        self.register_buffer("grid_lo", torch.full((in_features,), lo, dtype=dtype))
        self.register_buffer("grid_h", torch.full((in_features,), (hi - lo) / grid, dtype=dtype))
        self.coef = nn.Parameter(init_scale * torch.randn(in_features, grid + k, out_features))
        self.scale_base = nn.Parameter((2 * torch.rand(in_features, out_features) - 1) / in_features**0.5)
        self.scale_sp = nn.Parameter(torch.ones(in_features, out_features) / in_features**0.5)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, in, G + k) B-spline basis values."""
        return uniform_bspline_basis(x, self.grid_lo, self.grid_h, self.grid, self.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, in) -> (batch, out)."""
        B = padded_bspline_basis(x, self.grid_lo, self.grid_h, self.grid, self.k).flatten(1)
        W = pad_coefficients(self.coef * self.scale_sp.unsqueeze(1), self.k).flatten(0, 1)
        return B @ W + F.silu(x) @ self.scale_base

    def edge_splines(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled spline part of every edge. x: (batch, in) -> (batch, in, out)."""
        return torch.einsum("bim,imo->bio", self.basis(x), self.coef)

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
        self.coef = nn.Parameter(coef.to(device=self.coef.device, dtype=self.coef.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, grid={self.grid}, k={self.k}"


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
    """

    def __init__(
        self,
        width: Sequence[int],
        grid: int = 5,
        k: int = 3,
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        self.width = checks.widths("width", width)
        grid = checks.positive_int("grid", grid)
        self.k = checks.positive_int("k", k)
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        if not self.grid_range[1] > self.grid_range[0]:
            raise ValueError(f"grid_range must be increasing, got {tuple(grid_range)!r}")
        self.init_scale = checks.positive_float("init_scale", init_scale, allow_zero=True)
        lower, upper = bounds if bounds is not None else (None, None)
        self.normalize = BoxNormalizer(self.width[0], lower, upper, target=self.grid_range)
        self.layers = nn.ModuleList(
            KANLayer(a, b, grid, self.k, self.grid_range, self.init_scale) for a, b in zip(self.width[:-1], self.width[1:])
        )

    @property
    def grid(self) -> int:
        """Current number of grid intervals (the same on every layer)."""
        return self.layers[0].grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1])."""
        h = self.normalize(x)
        for layer in self.layers:
            h = layer(h)
        return h

    @torch.no_grad()
    def layer_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inputs each layer sees for the network input x: list of (batch, width[l])."""
        h = self.normalize(x)
        seen = []
        for layer in self.layers:
            seen.append(h)
            h = layer(h)
        return seen

    @torch.no_grad()
    def extend_grid(self, grid: int) -> None:
        """Grid extension (paper §2.4): refine every layer to ``grid`` intervals on its current range, keeping the function."""
        grid = checks.positive_int("grid", grid)
        for layer in self.layers:
            layer.refit(grid)

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move the grids of the hidden layers to cover the activations seen on the samples ``x: (batch, width[0])``.

        The first layer keeps ``grid_range``: its inputs are the normalised domain, which the
        samples may not reach at the edges.  Each new range is the samples' [min, max] widened by
        ``margin`` of its length; the function is kept by a least-squares refit.
        """
        seen = self.layer_inputs(x)
        for layer, h in zip(self.layers[1:], seen[1:]):
            lo, hi = h.min(dim=0).values, h.max(dim=0).values
            pad = margin * (hi - lo).clamp_min(1e-3)
            layer.refit(layer.grid, lo - pad, hi + pad)

    def n_params(self) -> int:
        """Number of trainable parameters (per edge G + k coefficients plus two scales)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this model's architecture in its current state (grid included)."""
        lower, upper = self.normalize.bounds()
        return {"width": list(self.width), "grid": self.grid, "k": self.k, "bounds": (lower, upper),
                "grid_range": self.grid_range, "init_scale": self.init_scale}
