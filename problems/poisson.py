"""Poisson problems: the KAN paper's §3.4 benchmark, its pykan-tutorial relative, 1-D variants with
every boundary-condition type, non-rectangular domains and a 5-D box."""
from __future__ import annotations

from math import pi

import torch

from kanpde import Box, Dirichlet, Disk, Fields, Interval, Neumann, Periodic, Polygon, Problem, Robin


class Poisson2D(Problem):
    """KAN paper §3.4 (Liu et al. 2024): on [-1,1]², ∇²u = f with u = 0 on the boundary.

    u = sin(πx)·sin(πy²),  f = −π²(1+4y²)·sin(πx)·sin(πy²) + 2π·sin(πx)·cos(πy²).
    Loss = α·(PDE residual MSE) + (boundary MSE) with α = 0.01, 10000 interior and 800 boundary
    points, as in the paper.  Published: KAN [2,10,1] reaches test MSE ≈ 1e-7, an MLP of 20,601
    parameters ≈ 1e-5 (the paper's Fig. 3.3).
    """

    name = "poisson2d"
    inputs = ("x", "y")
    published = (
        {"method": "KAN [2,10,1] (pykan)", "metric": "mse", "value": 1e-7, "params": 300, "source": "Liu et al. 2024, Fig. 3.3",
         "family": "kan"},
        {"method": "MLP [2,100,100,100,1]", "metric": "mse", "value": 1e-5, "params": 20601, "source": "Liu et al. 2024, Fig. 3.3",
         "family": "mlp"},
    )

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
    published = ()

    def residual(self, f: Fields) -> torch.Tensor:
        return f.laplacian("u") + 2 * pi**2 * torch.sin(pi * f["x"]) * torch.sin(pi * f["y"])

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1])).unsqueeze(1)


BOUNDARY_TYPES = ("dirichlet", "neumann", "robin", "periodic")


class Poisson1D(Problem):
    """1-D problems on [-1,1] with each kind of boundary condition (``bc``), all with exact solutions.

    * ``dirichlet``: u'' = −π²·sin(πx) + 6x, u(±1) = ±1; exact u = sin(πx) + x³.
    * ``neumann``: the same equation, u(−1) = −1 and u'(1) = −π + 3 (a pure Neumann problem has no
      unique solution, so the left end stays Dirichlet).
    * ``robin``: the same equation, u + u'·n = g at both ends (n the outward normal ∓1).
    * ``periodic``: u'' − u = f with u and u' periodic; exact u = sin(πx) + cos(2πx).
      (u'' = f alone with periodic conditions fixes u only up to a constant.)
    """

    name = "poisson1d"
    inputs = ("x",)

    def __init__(self, bc: str = "dirichlet", n_interior: int = 1000, n_boundary: int = 2, weights=None, **kw) -> None:
        if bc not in BOUNDARY_TYPES:
            raise ValueError(f"bc must be one of {', '.join(BOUNDARY_TYPES)}; got {bc!r}")
        self.bc = bc
        self.name = "poisson1d" if bc == "dirichlet" else f"poisson1d_{bc}"
        g = lambda x: self.exact(x)[:, 0]  # noqa: E731
        du = lambda x: (pi * torch.cos(pi * x) + 3 * x**2)[:, 0]  # noqa: E731  exact u' for dirichlet/neumann/robin
        left, right = (lambda x: x[:, 0] < 0), (lambda x: x[:, 0] > 0)
        conditions = {
            "dirichlet": [Dirichlet(g)],
            "neumann": [Dirichlet(g, where=left, n=1), Neumann(du, where=right, n=1)],
            "robin": [Robin(1.0, 1.0, lambda x: g(x) + du(x) * torch.sign(x[:, 0]))],
            "periodic": [Periodic("x", n=1)],
        }[bc]
        super().__init__(Interval(-1, 1), conditions, weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x = f["x"]
        if self.bc == "periodic":
            u = f["u"]
            source = -pi**2 * torch.sin(pi * x) - 4 * pi**2 * torch.cos(2 * pi * x) - torch.sin(pi * x) - torch.cos(2 * pi * x)
            return f.d("u", "x", "x") - u - source
        return f.d("u", "x", "x") + pi**2 * torch.sin(pi * x) - 6 * x

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        if self.bc == "periodic":
            return (torch.sin(pi * x) + torch.cos(2 * pi * x)).reshape(-1, 1)
        return (torch.sin(pi * x) + x**3).reshape(-1, 1)


class PoissonDisk(Problem):
    """On the unit disk, ∇²u = f with u = 0 on the circle; exact u = sin(π r²), r² = x² + y².

    f = 4π·cos(π r²) − 4π²·r²·sin(π r²) (for u = g(r²) in 2-D, ∇²u = 4g' + 4r²g'').
    A non-rectangular domain: points by exact disk sampling, normals radial.
    """

    name = "poisson_disk"
    inputs = ("x", "y")

    def __init__(self, n_interior: int = 4000, n_boundary: int = 400, weights=None, **kw) -> None:
        super().__init__(Disk((0.0, 0.0), 1.0), [Dirichlet(0.0)], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        s = f["x"] ** 2 + f["y"] ** 2
        return f.laplacian("u") - (4 * pi * torch.cos(pi * s) - 4 * pi**2 * s * torch.sin(pi * s))

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(pi * x.square().sum(dim=1, keepdim=True))


L_SHAPE = ((-1.0, -1.0), (0.0, -1.0), (0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (-1.0, 1.0))
"""[−1,1]² without its lower right quarter, counter-clockwise."""


class PoissonLShape(Problem):
    """On the L-shape [−1,1]² \\ (0,1]×[−1,0), ∇²u = −2π²·sin(πx)·sin(πy) with u = 0 on the boundary.

    Exact (manufactured) u = sin(πx)·sin(πy): every edge of the L lies on a line x or y ∈ {−1, 0, 1},
    where it vanishes.  (The classic −∇²u = 1 on the L has a corner singularity and no closed form.)
    """

    name = "poisson_lshape"
    inputs = ("x", "y")

    def __init__(self, n_interior: int = 4000, n_boundary: int = 600, weights=None, **kw) -> None:
        super().__init__(Polygon(L_SHAPE), [Dirichlet(0.0)], weights, n_interior, n_boundary, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.laplacian("u") + 2 * pi**2 * torch.sin(pi * f["x"]) * torch.sin(pi * f["y"])

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(pi * x[:, 0]) * torch.sin(pi * x[:, 1])).unsqueeze(1)


class PoissonND(Problem):
    """On [0,1]^d, ∇²u = −(π²/4)·Σ sin(πxᵢ/2) with u = exact on the boundary; exact u = Σ sin(πxᵢ/2).

    High-dimensional Poisson (d = 5 by default; inputs x1 … xd).  The evaluation set is the
    tensor grid with ``eval_points_per_dim`` (default 8) points per axis.
    """

    name = "poisson_nd"

    def __init__(self, d: int = 5, n_interior: int = 4000, n_boundary: int = 1000, weights=None,
                 eval_points_per_dim: int = 8, **kw) -> None:
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"d must be an integer >= 1, got {d!r}")
        self.d = d
        self.inputs = tuple(f"x{i + 1}" for i in range(d))
        super().__init__(Box([0.0] * d, [1.0] * d), [Dirichlet(lambda x: self.exact(x)[:, 0])], weights, n_interior,
                         n_boundary, eval_points_per_dim=eval_points_per_dim, **kw)

    def residual(self, f: Fields) -> torch.Tensor:
        x = torch.stack([f[n] for n in self.inputs], dim=1)
        return f.laplacian("u") + (pi**2 / 4) * torch.sin(pi * x / 2).sum(dim=1)

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(pi * x / 2).sum(dim=1, keepdim=True)
