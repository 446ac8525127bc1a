"""Steady incompressible Navier–Stokes: Kovasznay flow, the catalogue's first multi-output problem."""
from __future__ import annotations

from math import pi, sqrt

import torch

from kanpde import Box, Dirichlet, Fields, Problem


class Kovasznay(Problem):
    """Kovasznay flow at Re = 20 on [−0.5, 1] × [−0.5, 1.5]: outputs (u, v, p).

    u·u_x + v·u_y + p_x − ∇²u/Re = 0,  u·v_x + v·v_y + p_y − ∇²v/Re = 0,  u_x + v_y = 0, with
    λ = Re/2 − sqrt(Re²/4 + 4π²) and exact u = 1 − e^{λx}·cos(2πy), v = λ/(2π)·e^{λx}·sin(2πy),
    p = ½(1 − e^{2λx}).  Dirichlet values of u, v and p from the exact solution on the whole
    boundary (p's as well, so that the pressure's free constant is fixed and its error is meaningful).
    """

    name = "kovasznay"
    inputs = ("x", "y")
    outputs = ("u", "v", "p")

    def __init__(self, re: float = 20.0, n_interior: int = 4000, n_boundary: int = 400, weights=None, **kw) -> None:
        self.re = float(re)
        self.lam = self.re / 2 - sqrt(self.re**2 / 4 + 4 * pi**2)
        conditions = [Dirichlet(lambda x, o=o: self.exact(x)[:, o], output=name, name=f"dirichlet_{name}")
                      for o, name in enumerate(self.outputs)]
        super().__init__(Box([-0.5, -0.5], [1.0, 1.5]), conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> list[torch.Tensor]:
        u, v = f["u"], f["v"]
        mom_x = u * f.d("u", "x") + v * f.d("u", "y") + f.d("p", "x") - f.laplacian("u") / self.re
        mom_y = u * f.d("v", "x") + v * f.d("v", "y") + f.d("p", "y") - f.laplacian("v") / self.re
        return [mom_x, mom_y, f.d("u", "x") + f.d("v", "y")]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(self.lam * x[:, 0])
        y = 2 * pi * x[:, 1]
        return torch.stack([1 - e * torch.cos(y), self.lam / (2 * pi) * e * torch.sin(y), 0.5 * (1 - e * e)], dim=1)
