"""Time-dependent transport benchmarks: viscous Burgers and Allen–Cahn (numerical references), periodic convection (exact)."""
from __future__ import annotations

import math
from math import pi

import numpy as np
import torch

from kanpde import Dirichlet, Fields, Initial, Interval, Periodic, Problem, TimeDomain

from kanpde.problems.references import ALLEN_CAHN_D, BURGERS_NU, allen_cahn_reference, burgers_reference


def _grid_points(x: np.ndarray, t: np.ndarray, u: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference table u: (nt, nx) on x: (nx,), t: (nt,) -> points (nt*nx, 2) as (x, t) and values (nt*nx, 1)."""
    tt, xx = np.meshgrid(t, x, indexing="ij")
    pts = np.stack([xx.ravel(), tt.ravel()], axis=1)
    return torch.from_numpy(pts).double(), torch.from_numpy(u.reshape(-1, 1)).double()


class Burgers1D(Problem):
    """u_t + u·u_x − (0.01/π)·u_xx = 0 on x ∈ [−1,1], t ∈ [0,1]; u(x,0) = −sin(πx), u(±1,t) = 0.

    A shock forms at x = 0 near t ≈ 0.5 (max |u_x| ≈ 152.005 at t ≈ 0.5105).  Reference: the exact
    Cole–Hopf solution by Gauss–Hermite quadrature (:mod:`kanpde.problems.references`) on the classic
    256 × 100 grid (x = linspace(−1, 1, 256), t = 0, 0.01, …, 0.99), cached in ``cache_dir``
    (default ``$KANPDE_CACHE`` or ``~/.cache/kanpde``).  Inputs (x, t).
    """

    name = "burgers1d"
    inputs = ("x", "t")
    published = (
        {"method": "PINN 5x100", "metric": "rel_l2", "value": 1.45e-2, "params": 40800, "source": "PINNacle (Hao et al. 2023)",
         "family": "mlp"},
        {"method": "PINN + vRBA + SSBroyden (float64, GPU)", "metric": "rel_l2", "value": 8.25e-9, "params": "~2.2k",
         "source": "Toscano et al. 2025 (arXiv 2509.14198)", "family": "mlp"},
        {"method": "PINN + L-BFGS", "metric": "rel_l2", "value": 6.7e-4, "params": "~3k", "source": "Raissi et al. 2019",
         "family": "mlp"},
        {"method": "adaptive PIKAN", "metric": "rel_l2", "value": 2.43e-2, "params": "~1.7k", "source": "Rigas et al. 2024", "family": "kan"},
    )

    def __init__(self, n_interior: int = 6000, n_boundary: int = 600, weights=None, cache_dir: str | None = None, **kw) -> None:
        self.cache_dir = cache_dir
        domain = TimeDomain(Interval(-1, 1), 0.0, 1.0)
        super().__init__(domain, [Dirichlet(0.0), Initial(lambda x: -torch.sin(pi * x[:, 0]))], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.d("u", "t") + f["u"] * f.d("u", "x") - BURGERS_NU * f.d("u", "x", "x")

    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        ref = burgers_reference(directory=self.cache_dir)
        return _grid_points(ref["x"], ref["t"], ref["u"])


class Convection1D(Problem):
    """u_t + β·u_x = 0 on x ∈ [0, 2π] (periodic), t ∈ [0, 1]; u(x, 0) = sin x; exact u = sin(x − βt).

    With β = 30 (the default) the solution crosses the domain about five times: Krishnapriyan et al.
    (2021, "Characterizing possible failure modes in physics-informed neural networks") show a plain
    PINN failing there.  Inputs (x, t).
    """

    name = "convection1d"
    inputs = ("x", "t")
    published = (
        {"method": "PINN (vanilla)", "metric": "rel_l2", "value": 8.97e-1, "source": "Krishnapriyan et al. 2021, Table 1",
         "family": "mlp"},
        {"method": "PINN + curriculum regularisation", "metric": "rel_l2", "value": 2.02e-2,
         "source": "Krishnapriyan et al. 2021, Table 1", "family": "mlp"},
    )

    def __init__(self, beta: float = 30.0, n_interior: int = 6000, n_boundary: int = 400, weights=None, **kw) -> None:
        self.beta = float(beta)
        if not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number, got {beta!r}")
        domain = TimeDomain(Interval(0, 2 * pi), 0.0, 1.0)
        conditions = [Periodic("x", derivative=False), Initial(lambda x: torch.sin(x[:, 0]))]
        super().__init__(domain, conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.d("u", "t") + self.beta * f.d("u", "x")

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x[:, 0] - self.beta * x[:, 1]).unsqueeze(1)


class AllenCahn1D(Problem):
    """u_t − 1e-4·u_xx + 5u³ − 5u = 0 on x ∈ [−1,1], t ∈ [0,1]; u(x,0) = x²·cos(πx), periodic in x.

    Reference: Fourier pseudo-spectral with ETDRK4 (:mod:`kanpde.problems.references`; halving the step and
    doubling the modes changes it by ~2e-10), on 513 × 201 points (x = linspace(−1, 1, 513),
    t = linspace(0, 1, 201)), cached in ``cache_dir``.  Inputs (x, t).
    """

    name = "allen_cahn1d"
    inputs = ("x", "t")
    published = (
        {"method": "PirateNet", "metric": "rel_l2", "value": 2.24e-5, "source": "Wang et al. 2024", "family": "mlp"},
        {"method": "PINN + vRBA + SSBroyden (float64, GPU)", "metric": "rel_l2", "value": 1.88e-6, "params": "~2.25k",
         "source": "Toscano et al. 2025 (arXiv 2509.14198)", "family": "mlp"},
        {"method": "KKAN", "metric": "rel_l2", "value": 2.51e-5, "params": "118k", "source": "Toscano et al. 2024",
         "family": "kan"},
        {"method": "KKAN", "metric": "rel_l2", "value": 5.51e-5, "params": "22k", "source": "Toscano et al. 2024",
         "family": "kan"},
    )

    def __init__(self, n_interior: int = 6000, n_boundary: int = 400, weights=None, cache_dir: str | None = None, **kw) -> None:
        self.cache_dir = cache_dir
        domain = TimeDomain(Interval(-1, 1), 0.0, 1.0)
        conditions = [Periodic("x"), Initial(lambda x: x[:, 0] ** 2 * torch.cos(pi * x[:, 0]))]
        super().__init__(domain, conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        u = f["u"]
        return f.d("u", "t") - ALLEN_CAHN_D * f.d("u", "x", "x") + 5 * u**3 - 5 * u

    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        ref = allen_cahn_reference(directory=self.cache_dir)
        return _grid_points(ref["x"], ref["t"], ref["u"])
