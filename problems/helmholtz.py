"""The Helmholtz benchmark of the physics-informed KAN literature."""
from __future__ import annotations

from math import pi

import torch

from kanpde import Box, Dirichlet, Fields, Problem


class Helmholtz2D(Problem):
    """On [−1,1]², ∇²u + k²u = q with u = 0 on the boundary, q = (k² − π²(a₁² + a₂²))·sin(a₁πx)·sin(a₂πy).

    Exact u = sin(a₁πx)·sin(a₂πy); a₁ = 1, a₂ = 4, k = 1 by default (the PIKAN literature's case).
    """

    name = "helmholtz2d"
    inputs = ("x", "y")
    published = (
        {"method": "adaptive B-spline PIKAN", "metric": "rel_l2", "value": 1.02e-3, "params": 1777, "source": "Rigas et al. 2024",
         "family": "kan"},
        {"method": "PINN with RBA", "metric": "rel_l2", "value": 3.54e-3, "source": "Shukla et al. 2024", "family": "mlp"},
    )

    def __init__(self, a1: float = 1.0, a2: float = 4.0, k: float = 1.0, n_interior: int = 6000, n_boundary: int = 800,
                 weights=None, **kw) -> None:
        self.a1, self.a2, self.k = float(a1), float(a2), float(k)
        super().__init__(Box([-1, -1], [1, 1]), [Dirichlet(0.0)], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        a1, a2, k = self.a1, self.a2, self.k
        q = (k**2 - pi**2 * (a1**2 + a2**2)) * torch.sin(a1 * pi * f["x"]) * torch.sin(a2 * pi * f["y"])
        return f.laplacian("u") + k**2 * f["u"] - q

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(self.a1 * pi * x[:, 0]) * torch.sin(self.a2 * pi * x[:, 1])).unsqueeze(1)
