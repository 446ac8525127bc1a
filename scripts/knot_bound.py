"""How much can knot placement gain at all?  The best least-squares tensor-product spline fit of a problem's
exact (or reference) solution with G cubic intervals per axis, on uniform knots and on knots placed by
optimisation, on the grid where errors are measured.

    python scripts/knot_bound.py                                   # burgers1d allen_cahn1d helmholtz2d, G = 5 10 20
    python scripts/knot_bound.py --problems helmholtz2d --grids 10 20 40

A KAN's first layer has one knot vector per input, shared by that input's edges: per-axis knots, as in a
tensor-product spline.  The ratio (optimised / uniform) is therefore what moving the knots can bring to
the approximation of the solution itself, before any training; no training technique makes a placement
worth more than that.  The optimiser (L-BFGS on the log-gaps of each axis's interior knots, exact
gradients by autograd through the spline basis) finds a local optimum, so the optimised error is an
upper bound of the best placement's and the ratio a lower bound of the possible gain.

For comparison, de Boor's asymptotic theory (cubic splines, L2 error, N -> infinity) puts the best gain
for a smooth f at (mean |f''''|^(2/9))^(9/2) / (mean |f''''|^2)^(1/2): printed for the sine factors of
``helmholtz2d``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kanpde.experiment.catalogue import load_problem  # noqa: E402
from kanpde.models.knots import knot_basis  # noqa: E402

K = 3


def solution_grid(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The problem's evaluation set as a grid: axes a (n1,), b (n2,) and U (n1, n2), float64."""
    x, u = load_problem(name).evaluation_set()
    if u is None:
        raise ValueError(f"{name} has neither an exact solution nor reference data to fit")
    x, u = x.double(), u.double()[:, 0]
    a, b = torch.unique(x[:, 0]), torch.unique(x[:, 1])
    if len(a) * len(b) != len(x):
        raise ValueError(f"{name}'s evaluation points are not a grid ({len(x)} points, {len(a)} x {len(b)} values)")
    U = torch.full((len(a), len(b)), math.nan, dtype=torch.float64)
    U[torch.searchsorted(a, x[:, 0]), torch.searchsorted(b, x[:, 1])] = u
    return a, b, U


def padded(interior: torch.Tensor) -> torch.Tensor:
    """(G + 2k + 1,) the interior knots (G + 1,) padded by k knots at each end, spaced as the end cells."""
    step = torch.arange(1, K + 1, dtype=interior.dtype)
    left = interior[0] - (interior[1] - interior[0]) * step.flip(0)
    right = interior[-1] + (interior[-1] - interior[-2]) * step
    return torch.cat([left, interior, right])


def knots_of(logits: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Interior knots (G + 1,) on [lo, hi] whose G gaps are the softmax of ``logits`` (G,): always increasing."""
    gaps = torch.softmax(logits, 0) * (hi - lo)
    return torch.cat([gaps.new_full((1,), lo), lo + gaps.cumsum(0)])


def fit_error(a: torch.Tensor, b: torch.Tensor, U: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of the least-squares tensor-product spline on the knots ta, tb (interior, padded here)."""
    Qa = torch.linalg.qr(knot_basis(a[:, None], padded(ta)[None], K)[:, 0])[0]
    Qb = torch.linalg.qr(knot_basis(b[:, None], padded(tb)[None], K)[:, 0])[0]
    fit = Qa @ (Qa.T @ U @ Qb) @ Qb.T
    return torch.linalg.norm(U - fit) / torch.linalg.norm(U)


def optimise(a, b, U, grid: int, iters: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Uniform error, optimised error and the optimised interior knots of each axis."""
    span = [(float(v[0]), float(v[-1])) for v in (a, b)]
    z0 = np.zeros(2 * grid)

    def split(z: torch.Tensor):
        return knots_of(z[:grid], *span[0]), knots_of(z[grid:], *span[1])

    def f(z: np.ndarray):
        zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
        err = torch.log(fit_error(a, b, U, *split(zt)))
        err.backward()
        return float(err.detach()), zt.grad.numpy()

    uniform = math.exp(f(z0)[0])
    res = minimize(f, z0, jac=True, method="L-BFGS-B", options={"maxiter": iters})
    ta, tb = split(torch.tensor(res.x))
    return uniform, math.exp(res.fun), ta, tb


def de_boor_gain(freq: float, n: int = 200001) -> float:
    """Asymptotic best gain of free over uniform knots for sin(freq·x) with cubic splines (L2)."""
    s = np.abs(np.sin(np.linspace(0.0, 2 * math.pi, n)))
    return float(np.mean(s ** (2 / 9)) ** 4.5 / np.mean(s**2) ** 0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", nargs="+", default=["burgers1d", "allen_cahn1d", "helmholtz2d"])
    ap.add_argument("--grids", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument("--iters", type=int, default=300, help="L-BFGS iterations per fit (default 300)")
    args = ap.parse_args(argv)
    if any(g < 2 for g in args.grids):
        ap.error(f"--grids must be at least 2, got {args.grids}")
    print("| problem | G | uniform knots | optimised knots | ratio | knots of the first axis | time |")
    print("|---|---|---|---|---|---|---|")
    for name in args.problems:
        a, b, U = solution_grid(name)
        for grid in args.grids:
            start = time.time()
            uniform, best, ta, _ = optimise(a, b, U, grid, args.iters)
            knots = ", ".join(f"{v:.3g}" for v in ta.tolist()) if grid <= 10 else f"{grid + 1} knots"
            print(f"| {name} | {grid} | {uniform:.3g} | {best:.3g} | {best / uniform:.2f} | {knots} | {time.time() - start:.0f} s |",
                  flush=True)
    print(f"\nde Boor's asymptotic best gain for a sine factor (cubic, L2): {de_boor_gain(1.0):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
