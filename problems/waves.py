"""Second order in time: the wave equation and the nonlinear Klein–Gordon equation."""
from __future__ import annotations

from math import pi

import torch

from kanpde import Dirichlet, Fields, Initial, InitialRate, Interval, Problem, TimeDomain


class Wave1D(Problem):
    """u_tt = 4·u_xx on x, t ∈ [0,1], u = 0 at x = 0, 1, initial value and zero initial rate.

    Exact u = sin(πx)·cos(2πt) + ½·sin(4πx)·cos(8πt).  Inputs (x, t).
    """

    name = "wave1d"
    inputs = ("x", "t")
    published = (
        {"method": "PINN + NTK-adaptive weights", "metric": "rel_l2", "value": 1.73e-3, "source": "Wang, Yu & Perdikaris 2022",
         "family": "mlp"},
        {"method": "PINN (vanilla)", "metric": "rel_l2", "value": 4.5e-1, "source": "Wang, Yu & Perdikaris 2022", "family": "mlp"},
    )
    C2 = 4.0

    def __init__(self, n_interior: int = 5000, n_boundary: int = 500, weights=None, **kw) -> None:
        domain = TimeDomain(Interval(0, 1), 0.0, 1.0)
        conditions = [Dirichlet(0.0), Initial(lambda x: self.exact(x)[:, 0]), InitialRate(0.0)]
        super().__init__(domain, conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.d("u", "t", "t") - self.C2 * f.d("u", "x", "x")

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        xs, t = x[:, 0], x[:, 1]
        return (torch.sin(pi * xs) * torch.cos(2 * pi * t) + 0.5 * torch.sin(4 * pi * xs) * torch.cos(8 * pi * t)).unsqueeze(1)


class KleinGordon1D(Problem):
    """u_tt − u_xx + u³ = f on x, t ∈ [0,1]; exact u = x·cos(5πt) + (xt)³, f from it.

    The exact solution gives the boundary values (x = 0, 1), the initial value u(x,0) = x and the
    initial rate u_t(x,0) = 0.  Inputs (x, t).
    """

    name = "klein_gordon1d"
    inputs = ("x", "t")
    published = (
        {"method": "PINN + learning-rate annealing + improved architecture", "metric": "rel_l2", "value": 2.81e-3, "params": "~10k",
         "source": "Wang, Teng & Perdikaris 2021, Table 3", "family": "mlp"},
        {"method": "PINN + learning-rate annealing", "metric": "rel_l2", "value": 1.06e-2, "params": "~10k",
         "source": "Wang, Teng & Perdikaris 2021, Table 3", "family": "mlp"},
    )

    def __init__(self, n_interior: int = 5000, n_boundary: int = 500, weights=None, **kw) -> None:
        domain = TimeDomain(Interval(0, 1), 0.0, 1.0)
        g = lambda x: self.exact(x)[:, 0]  # noqa: E731
        conditions = [Dirichlet(g), Initial(g), InitialRate(0.0)]
        super().__init__(domain, conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x, t = f["x"], f["t"]
        u = x * torch.cos(5 * pi * t) + (x * t) ** 3
        u_tt = -25 * pi**2 * x * torch.cos(5 * pi * t) + 6 * x**3 * t
        u_xx = 6 * x * t**3
        source = u_tt - u_xx + u**3
        return f.d("u", "t", "t") - f.d("u", "x", "x") + f["u"] ** 3 - source

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        xs, t = x[:, 0], x[:, 1]
        return (xs * torch.cos(5 * pi * t) + (xs * t) ** 3).unsqueeze(1)
