"""Poisson problems: the KAN paper's §3.4 benchmark and two simpler relatives."""
from __future__ import annotations

from math import pi

import torch

from kanpde import Box, Dirichlet, Fields, Interval, Problem


class Poisson2D(Problem):
    """KAN paper §3.4 (Liu et al. 2024): on [-1,1]², ∇²u = f with u = 0 on the boundary.

    u = sin(πx)·sin(πy²),  f = −π²(1+4y²)·sin(πx)·sin(πy²) + 2π·sin(πx)·cos(πy²).
    Loss = α·(PDE residual MSE) + (boundary MSE) with α = 0.01, 10000 interior and 800 boundary
    points, as in the paper.  Published: KAN [2,10,1] reaches test MSE ≈ 1e-7, an MLP of 20,601
    parameters ≈ 1e-5 (the paper's Fig. 3.3).
    """

    name = "poisson2d"
    inputs = ("x", "y")

    def __init__(self, n_interior: int = 10000, n_boundary: int = 800, weights=None, **kw) -> None:
        weights = {"pde": 0.01, "dirichlet": 1.0, **(weights or {})}
        super().__init__(Box([-1, -1], [1, 1]), [Dirichlet(0.0)], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x, y = f["x"], f["y"]
        source = -pi**2 * (1 + 4 * y**2) * torch.sin(pi * x) * torch.sin(pi * y**2) + 2 * pi * torch.sin(pi * x) * torch.cos(pi * y**2)
        return f.laplacian("u") - source

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1] ** 2)).unsqueeze(1)


class Poisson2DSin(Poisson2D):
    """The pykan PDE tutorial's problem: on [-1,1]², ∇²u = −2π²·sin(πx)·sin(πy), u = 0 on the boundary.

    Exact u = sin(πx)·sin(πy).  Same domain, loss weighting and point counts as ``poisson2d``.
    """

    name = "poisson2d_sin"

    def residual(self, f: Fields) -> torch.Tensor:
        return f.laplacian("u") + 2 * pi**2 * torch.sin(pi * f["x"]) * torch.sin(pi * f["y"])

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1])).unsqueeze(1)


class Poisson1D(Problem):
    """On [-1,1], u'' = −π²·sin(πx) + 6x with u(−1) = −1, u(1) = 1; exact u = sin(πx) + x³."""

    name = "poisson1d"
    inputs = ("x",)

    def __init__(self, n_interior: int = 256, n_boundary: int = 2, weights=None, **kw) -> None:
        super().__init__(Interval(-1, 1), [Dirichlet(lambda x: self.exact(x)[:, 0])], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x = f["x"]
        return f.d("u", "x", "x") + pi**2 * torch.sin(pi * x) - 6 * x

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(pi * x) + x**3).reshape(-1, 1)
