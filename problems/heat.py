"""Parabolic problems: 1-D diffusion with a source, convection–diffusion in 2-D, and an inverse heat
problem that learns the diffusivity from noisy observations."""
from __future__ import annotations

from math import pi

import torch

from kanpde import Box, Dirichlet, Fields, Initial, Interval, Observations, Problem, TimeDomain


class Diffusion1D(Problem):
    """u_t − u_xx = e^{−t}(π² − 1)·sin(πx) on x, t ∈ [0,1]; u(x,0) = sin(πx), u = 0 at x = 0, 1.

    Exact u = e^{−t}·sin(πx).  Inputs (x, t).
    """

    name = "diffusion1d"
    inputs = ("x", "t")
    published = ({"method": "adaptive PIKAN", "metric": "rel_l2", "value": 2.1e-4, "params": "~1.7k", "source": "Rigas et al. 2024",
                  "family": "kan"},)

    def __init__(self, n_interior: int = 4000, n_boundary: int = 400, weights=None, **kw) -> None:
        domain = TimeDomain(Interval(0, 1), 0.0, 1.0)
        conditions = [Dirichlet(0.0), Initial(lambda x: torch.sin(pi * x[:, 0]))]
        super().__init__(domain, conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x, t = f["x"], f["t"]
        return f.d("u", "t") - f.d("u", "x", "x") - torch.exp(-t) * (pi**2 - 1) * torch.sin(pi * x)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.exp(-x[:, 1]) * torch.sin(pi * x[:, 0])).unsqueeze(1)


class ConvectionDiffusion2D(Problem):
    """u_t + u_x + u_y − 0.01·∇²u = r on (x, y, t) ∈ [0,1]³, exact u = exp(−100((x−½)² + (y−½)²))·e^{−t}.

    r follows from the exact solution, which also gives the initial and boundary values.  Inputs
    (x, y, t): time is the last input.
    """

    name = "convection_diffusion2d"
    inputs = ("x", "y", "t")
    EPS = 0.01

    def __init__(self, n_interior: int = 6000, n_boundary: int = 1200, weights=None, **kw) -> None:
        g = lambda x: self.exact(x)[:, 0]  # noqa: E731
        domain = TimeDomain(Box([0, 0], [1, 1]), 0.0, 1.0)
        super().__init__(domain, [Dirichlet(g), Initial(g)], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x, y = f["x"] - 0.5, f["y"] - 0.5
        u = torch.exp(-100 * (x**2 + y**2) - f["t"])
        # for this u: u_t = −u, u_x = −200x·u, ∇²u = (40000(x² + y²) − 400)·u
        r = u * (-1 - 200 * x - 200 * y - self.EPS * (40000 * (x**2 + y**2) - 400))
        return f.d("u", "t") + f.d("u", "x") + f.d("u", "y") - self.EPS * f.laplacian("u", ("x", "y")) - r

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-100 * ((x[:, 0] - 0.5) ** 2 + (x[:, 1] - 0.5) ** 2) - x[:, 2]).unsqueeze(1)


class InverseHeat1D(Problem):
    """Learn the diffusivity κ of u_t = κ·u_xx on x, t ∈ [0,1] from noisy point observations.

    Truth κ = 0.1, u = e^{−κπ²t}·sin(πx); known initial value and zero boundary values, plus
    ``n_obs`` observations of u with Gaussian noise of standard deviation ``noise`` (relative to
    max |u| = 1), drawn with ``obs_seed``.  κ starts at ``kappa0`` and trains with the network;
    ``results.h5`` records its trajectory and its final relative error (``unknown_kappa_rel_err``).
    """

    name = "inverse_heat1d"
    inputs = ("x", "t")
    KAPPA = 0.1

    def __init__(self, kappa0: float = 0.5, n_obs: int = 200, noise: float = 0.01, obs_seed: int = 0,
                 n_interior: int = 3000, n_boundary: int = 300, weights=None, **kw) -> None:
        domain = TimeDomain(Interval(0, 1), 0.0, 1.0)
        gen = torch.Generator().manual_seed(int(obs_seed))
        x_obs = domain.sample_interior(int(n_obs), "uniform", int(obs_seed) + 99)
        clean = self._truth(x_obs)[:, 0]
        noisy = clean + float(noise) * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
        conditions = [Dirichlet(0.0), Initial(lambda x: torch.sin(pi * x[:, 0])), Observations(x_obs, noisy)]
        self.true_unknowns = {"kappa": self.KAPPA}
        super().__init__(domain, conditions, weights, n_interior, n_boundary, unknowns={"kappa": kappa0}, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.d("u", "t") - self.unknown("kappa") * f.d("u", "x", "x")

    def _truth(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.exp(-self.KAPPA * pi**2 * x[:, 1]) * torch.sin(pi * x[:, 0])).unsqueeze(1)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return self._truth(x)
