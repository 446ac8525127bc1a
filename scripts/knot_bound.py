"""How much can knot placement gain at all?  The best least-squares tensor-product spline fit of a problem's
exact (or reference) solution with G cubic intervals per axis, on uniform knots and on knots placed by
optimisation, on the grid where errors are measured (no cell narrower than that grid's spacing).

    python scripts/knot_bound.py                                   # burgers1d allen_cahn1d helmholtz2d, G = 5 10 20
    python scripts/knot_bound.py --problems helmholtz2d --grids 10 20 40
    python scripts/knot_bound.py --grids 20 --train 0 1 2         # and train with those knots (seeds 0, 1, 2)
    python scripts/knot_bound.py --problems allen_cahn1d --grids 10 --train 0 --preset --steps 4000 -- problem.exact_periodic=false

A KAN's first layer has one knot vector per input, shared by that input's edges: per-axis knots, as in a
tensor-product spline.  The ratio (optimised / uniform) is therefore what moving the knots can bring to
the approximation of the solution itself, before any training; no training technique makes a placement
worth more than that.  The optimiser (L-BFGS on the log-gaps of each axis's interior knots, exact
gradients by autograd through the spline basis) finds a local optimum, so the optimised error is an
upper bound of the best placement's and the ratio a lower bound of the possible gain.

``--train SEED ...`` then asks what the best placement is worth in training: it trains the uniform variant of
``scripts/knots_study.py`` (KAN [2,10,1], Adam for a quarter of 2,000 steps, then ``ssbroyden``), once as it is
and once with the first layer's knots fixed from the start at the optimised ones (an oracle: they come from the
exact solution), same points, seed and optimiser.  If the oracle knots do not beat uniform ones, no indicator
that places knots during training will: the limit is elsewhere.

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
for folder in (ROOT, Path(__file__).resolve().parent):  # kanpde, and the sibling script knots_study
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from kanpde.experiment.catalogue import load_problem  # noqa: E402
from kanpde.experiment.run import build_parts  # noqa: E402
from kanpde.experiment.solve import solve  # noqa: E402
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
    U[torch.searchsorted(a, x[:, 0].contiguous()), torch.searchsorted(b, x[:, 1].contiguous())] = u
    return a, b, U


def padded(interior: torch.Tensor) -> torch.Tensor:
    """(G + 2k + 1,) the interior knots (G + 1,) padded by k knots at each end, spaced as the end cells."""
    step = torch.arange(1, K + 1, dtype=interior.dtype)
    left = interior[0] - (interior[1] - interior[0]) * step.flip(0)
    right = interior[-1] + (interior[-1] - interior[-2]) * step
    return torch.cat([left, interior, right])


def knots_of(logits: torch.Tensor, lo: float, hi: float, floor: float) -> torch.Tensor:
    """Interior knots (G + 1,) on [lo, hi] whose G gaps are ``floor`` plus shares (the softmax of ``logits`` (G,))
    of the rest: increasing, and no cell narrower than ``floor``."""
    gaps = floor + torch.softmax(logits, 0) * (hi - lo - len(logits) * floor)
    return torch.cat([gaps.new_full((1,), lo), lo + gaps.cumsum(0)])


def fit_error(a: torch.Tensor, b: torch.Tensor, U: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of the least-squares tensor-product spline on the knots ta, tb (interior, padded here)."""
    Qa = torch.linalg.qr(knot_basis(a[:, None], padded(ta)[None], K)[:, 0])[0]
    Qb = torch.linalg.qr(knot_basis(b[:, None], padded(tb)[None], K)[:, 0])[0]
    fit = Qa @ (Qa.T @ U @ Qb) @ Qb.T
    return torch.linalg.norm(U - fit) / torch.linalg.norm(U)


def optimise(a, b, U, grid: int, iters: int) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Uniform error, optimised error and the optimised interior knots of each axis."""
    if min(len(a), len(b)) <= grid + K:
        raise ValueError(f"G = {grid} needs more than {grid + K} grid points per axis to fit, got {len(a)} x {len(b)}")
    # no cell narrower than the grid's spacing: a fit judged on grid points alone could otherwise put a jump
    # between two of them (and at most half a uniform cell, so that the floor leaves room to move)
    span = [(float(v[0]), float(v[-1]), min(float(v.diff().max()), float(v[-1] - v[0]) / (2 * grid))) for v in (a, b)]
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


def train(name: str, grid: int, seed: int, knots: tuple[torch.Tensor, torch.Tensor] | None, preset: bool = False,
          steps: int | None = None, extra: tuple[str, ...] = ()) -> float:
    """Rel L2 of the knots study's uniform recipe (built from the same config as ``python -m kanpde`` builds it),
    with the first layer's knots set to ``knots`` (interior, per axis, domain coordinates) if given.  ``preset``:
    the problem's ``_best`` preset at this grid instead, B-spline edges, no grid extension (``steps`` replaces its
    step count), as ``knots_study.py --preset`` trains it.  ``extra``: overrides for both runs, last.  An input
    embedding (a periodic one, say) is refused: the first layer's inputs would then be features, not the axes."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from kanpde.experiment.configs import config_dir

    from knots_study import overrides  # a sibling script (its folder is on the path: see the top)

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        args = (overrides(name, "uniform", [2, 10, 1], grid, steps, 500, seed, preset=True, extra=extra) if preset
                else overrides(name, "uniform", [2, 10, 1], grid, steps or 2000, 250, seed, "ssbroyden", extra=extra))
        cfg = compose("config", overrides=args)
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["trainer"]["device"] = "cpu"
    trainer, problem, net = build_parts(plain, seed)
    if knots is not None and net.embedding.active:
        raise ValueError(f"{name}: the model embeds its inputs, so its first layer's knots are not per axis "
                         "(for a periodic embedding, add -- problem.exact_periodic=false)")
    if knots is not None:  # the first layer sees the normalised box: map the domain's knots there
        net.use_free_knots()
        n = net.normalize
        domain = torch.stack([padded(t) for t in knots]).to(n.scale.dtype)
        net.layers[0].move_knots(domain * n.scale.unsqueeze(1) + n.shift.unsqueeze(1))
    return float(solve(problem, net, trainer, seed=seed, plots=False).attributes["rel_l2"])


def de_boor_gain(freq: float, n: int = 200001) -> float:
    """Asymptotic best gain of free over uniform knots for sin(freq·x) with cubic splines (L2)."""
    s = np.abs(np.sin(np.linspace(0.0, 2 * math.pi, n)))
    return float(np.mean(s ** (2 / 9)) ** 4.5 / np.mean(s**2) ** 0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", nargs="+", default=["burgers1d", "allen_cahn1d", "helmholtz2d"])
    ap.add_argument("--grids", nargs="+", type=int, default=[5, 10, 20])
    ap.add_argument("--iters", type=int, default=300, help="L-BFGS iterations per fit (default 300)")
    ap.add_argument("--train", nargs="*", type=int, default=[], metavar="SEED",
                    help="also train the knots study's uniform recipe with uniform and with the optimised first-layer knots")
    ap.add_argument("--preset", action="store_true",
                    help="train each problem's _best preset at the grid instead (as knots_study.py --preset)")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: 2000, or the preset's)")
    ap.add_argument("extra", nargs="*", help="overrides for every training run, after -- (e.g. -- problem.exact_periodic=false)")
    args = ap.parse_args(argv)
    if any(g < 2 for g in args.grids):
        ap.error(f"--grids must be at least 2, got {args.grids}")
    if not args.train and (args.preset or args.steps is not None or args.extra):
        ap.error("--preset, --steps and overrides after -- apply to training runs: add --train SEED ...")
    if args.train:
        torch.set_num_threads(1)  # as the knots study's runs (threads=1)
    print("| problem | G | uniform knots | optimised knots | ratio | knots of the first axis | time |")
    print("|---|---|---|---|---|---|---|")
    trained = []
    for name in args.problems:
        a, b, U = solution_grid(name)
        for grid in args.grids:
            start = time.time()
            uniform, best, ta, tb = optimise(a, b, U, grid, args.iters)
            knots = ", ".join(f"{v:.3g}" for v in ta.tolist()) if grid <= 10 else f"{grid + 1} knots"
            print(f"| {name} | {grid} | {uniform:.3g} | {best:.3g} | {best / uniform:.2g} | {knots} | {time.time() - start:.0f} s |",
                  flush=True)
            for seed in args.train:
                runs = [train(name, grid, seed, k, args.preset, args.steps, tuple(args.extra)) for k in (None, (ta, tb))]
                trained.append((name, grid, seed, *runs))
    if trained:
        print("\ntrained (rel L2): | problem | G | seed | uniform knots | optimised first-layer knots | ratio |")
        for name, grid, seed, u, o in trained:
            print(f"| {name} | {grid} | {seed} | {u:.3g} | {o:.3g} | {o / u:.2f} |")
    print(f"\nde Boor's asymptotic best gain for a sine factor (cubic, L2): {de_boor_gain(1.0):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
