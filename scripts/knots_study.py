"""Adaptive knots against uniform grids at equal parameter count (issue: adaptive knots).

    python scripts/knots_study.py --quick                  # 3 problems x 8 variants, ~40 min on 2 cores
    python scripts/knots_study.py --problems burgers1d --steps 4000 --grid 20

Every variant trains the same KAN (``--width``, k = 3) with the same points, optimiser (Adam for a
quarter of the steps, then L-BFGS or ``--optimizer``), steps and seed, no grid extension, and ends with the same number
of parameters (that of G = ``--grid`` on every layer):

* ``uniform``            G fixed, uniform knots (today's default grid);
* ``insert/residual``    G - ``--every-count`` changes start coarser; one knot per input every
                         ``--every`` steps where the residual indicator is largest, up to the uniform
                         run's parameter count (exact insertions);
* ``move/<indicator>``   G fixed; every ``--every`` steps two knots per input go where the indicator
                         is largest and two leave where it is smallest (a least-squares refit);
* ``density/<indicator>``  G fixed; every ``--every`` steps the interior knots move to the quantiles
                         of the indicator's density (20 % uniform mixed in; a least-squares refit);

with the ``residual``, ``input`` (point density, as pykan) and ``curvature`` indicators.  Each run is
one ``python -m kanpde`` call with one thread (``--jobs`` at a time) into ``--out/<problem>/<variant>``;
the table (relative L2 error against the problem's exact or reference solution) goes to stdout and
``--out/knots_study.csv``.  Runs whose ``results.h5`` says ``ok`` are not run again.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kanpde.io.results import read_results  # noqa: E402

INDICATORS = ("residual", "input", "curvature")
# move-jump: as move, but the knots that leave are the older ones whose removal changes the edges least
# descend: the knots follow the loss's gradient (no indicator)
VARIANTS = ("uniform", "insert/residual", *(f"{m}/{i}" for m in ("move", "move-jump", "density") for i in INDICATORS), "descend")


def n_params(width: list[int], grid: int, k: int = 3) -> int:
    """Parameters of a B-spline KAN: (G + k + 2) per edge."""
    return sum(a * b for a, b in zip(width, width[1:])) * (grid + k + 2)


def overrides(problem: str, variant: str, width: list[int], grid: int, steps: int | None, every: int, seed: int = 0,
              optimizer: str = "lbfgs", preset: bool = False, keep_curvature: bool = False, until: int | None = None,
              extra: tuple[str, ...] = (), relax: float = 1.0) -> list[str]:
    """The ``python -m kanpde`` overrides of one run: Adam for a quarter of the steps, then ``optimizer``; or, with
    ``preset``, the problem's ``<problem>_best`` preset (its width, optimiser, steps and techniques, but B-spline edges
    and not its knot schedule) at grid ``grid`` without grid extensions (``steps``, if given, replaces the preset's).
    ``relax``: the share of the way a density change moves the knots.  ``extra`` overrides go last."""
    if preset:
        # knots are B-spline knots (a preset may train Chebyshev edges), and the preset's own knot schedule (if any)
        # gives way to the variant's: every knot setting starts at its default
        common = [f"+experiment={problem}_best", *([f"trainer.steps={steps}"] if steps else []), "model.basis=bspline",
                  "trainer.knots.method=none", "trainer.knots.keep_curvature=false", "trainer.knots.until=null"]
    else:
        common = [f"problem={problem}", f"model.width=[{','.join(map(str, width))}]", f"trainer.optimizer=adam_{optimizer}",
                  f"trainer.adam_steps={steps // 4}", f"trainer.steps={steps}"]
    common += ["trainer.grid_extension.at=[]", "trainer.grid_extension.grids=[]", "trainer.progress=false",
               "trainer.resume=auto", "plots=false", "threads=1", f"seed={seed}"]
    if variant == "uniform":
        return [*common, f"model.grid={grid}", *extra]
    method, indicator = variant.split("/") if "/" in variant else (variant, "residual")
    removal = ["trainer.knots.removal=jump"] if method == "move-jump" else []
    method = "move" if method == "move-jump" else method
    knots = [f"trainer.knots.method={method}", *removal, f"trainer.knots.indicator={indicator}", f"trainer.knots.every={every}",
             "trainer.knots.follow=false", *(["trainer.knots.keep_curvature=true"] if keep_curvature else []),
             *([f"trainer.knots.until={until}"] if until is not None else []),
             *([f"trainer.knots.relax={relax}"] if method == "density" and relax != 1.0 else [])]
    if method == "insert":
        if preset:
            raise ValueError("insert/residual needs the run's step count and width, which --preset leaves to the preset")
        changes = max(1, steps // every - 1)  # knot changes at every, 2·every, ... < steps
        return [*common, f"model.grid={grid - changes}", *knots, "trainer.knots.insert=1",
                f"trainer.knots.budget={n_params(width, grid)}", *extra]
    return [*common, f"model.grid={grid}", *knots, "trainer.knots.insert=2", *extra]


def run(out: Path, problem: str, variant: str, args: argparse.Namespace) -> dict:
    """One run (skipped when its results say ok); its row of the table."""
    width = [int(w) for w in args.width.split(",")]
    run_dir = out / problem / variant.replace("/", "_")
    results = run_dir / "results.h5"
    done = results.exists() and read_results(results)["attrs"]["status"] == "ok"
    if not done:
        cmd = [sys.executable, "-m", "kanpde", *overrides(problem, variant, width, args.grid, args.steps, args.every, args.seed,
                                                          args.optimizer, args.preset, args.keep_curvature, args.until,
                                                          tuple(args.extra), args.relax),
               f"hydra.run.dir={run_dir}"]
        run_dir.mkdir(parents=True, exist_ok=True)
        start = time.time()
        with open(run_dir.with_suffix(".log"), "w") as log:
            code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        print(f"{problem:<14} {variant:<20} exit {code} in {time.time() - start:.0f} s", flush=True)
        if code != 0:
            return {"problem": problem, "variant": variant, "rel_l2": float("nan"), "n_params": 0, "grid": 0, "wall_time_s": 0.0}
    attrs = read_results(results)["attrs"]
    return {"problem": problem, "variant": variant, "rel_l2": attrs["rel_l2"], "n_params": attrs["n_params"],
            "grid": attrs["grid"], "wall_time_s": attrs["wall_time_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", nargs="+", default=["burgers1d", "allen_cahn1d", "helmholtz2d"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--width", default="2,10,1", help="KAN widths, inputs first (default 2,10,1: the problems' x, t or x, y)")
    ap.add_argument("--grid", type=int, default=20, help="final G of every variant (default 20)")
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps (default 2000: a quarter Adam, then --optimizer; with --preset, the preset's)")
    ap.add_argument("--every", type=int, default=250, help="steps between knot changes")
    ap.add_argument("--optimizer", default="lbfgs", choices=("lbfgs", "bfgs", "ssbfgs", "ssbroyden"),
                    help="the second-order method after Adam (default lbfgs, as the documented study ran)")
    ap.add_argument("--quick", action="store_true", help="--steps 1000 --every 125 --grid 12")
    ap.add_argument("--preset", action="store_true",
                    help="train each problem's <problem>_best preset (its width, optimiser, steps, techniques) at G = --grid, "
                         "without grid extensions; --width, --optimizer and the Adam quarter do not apply")
    ap.add_argument("--keep-curvature", action="store_true",
                    help="a dense quasi-Newton optimiser keeps its inverse Hessian through each knot change (trainer.knots.keep_curvature)")
    ap.add_argument("--until", type=int, default=None, help="no knot change at or after this step (trainer.knots.until)")
    ap.add_argument("--relax", type=float, default=1.0,
                    help="density variants move the knots this share of the way each change (trainer.knots.relax; default 1)")
    ap.add_argument("extra", nargs="*", help="overrides for every run, after -- (e.g. -- model.width=[2,16,1])")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    ap.add_argument("--seed", type=int, default=0, help="seed of the points and the initial network (default 0)")
    ap.add_argument("--out", type=Path, default=None, help="directory (default multirun/knots_study/<time>)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.every, args.grid = 1000, 125, 12
    if args.steps is None and not args.preset:
        args.steps = 2000
    if args.every < 1 or (args.steps is not None and args.steps <= args.every) or args.jobs < 1:
        ap.error("need --every >= 1, --steps > --every and --jobs >= 1")
    if not 0 < args.relax <= 1:
        ap.error(f"--relax must be in (0, 1], got {args.relax}")
    if args.preset and "insert/residual" in args.variants:
        ap.error("--preset cannot run insert/residual (its budget needs the width and steps the preset holds); pick --variants")
    if args.steps is not None and args.grid - max(1, args.steps // args.every - 1) < 1 and "insert/residual" in args.variants:
        ap.error(f"--grid {args.grid} is too small for {args.steps // args.every - 1} insertions of one knot")
    if args.keep_curvature and not args.preset and args.optimizer == "lbfgs":
        ap.error("--keep-curvature needs a dense quasi-Newton --optimizer (bfgs, ssbfgs, ssbroyden)")
    out = args.out or ROOT / "multirun" / "knots_study" / time.strftime("%Y-%m-%d_%H-%M-%S")
    jobs = [(p, v) for p in args.problems for v in args.variants]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda job: run(out, *job, args), jobs))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "knots_study.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if args.preset:
        print(f"\nseed {args.seed}, each problem's _best preset at G = {args.grid}, {args.steps or 'its'} steps, knots changed every "
              f"{args.every}{' keeping the curvature' if args.keep_curvature else ''}, relax {args.relax}"
              f"{' '.join([''] + args.extra)}")
    else:
        print(f"\nseed {args.seed}, KAN [{args.width}], G = {args.grid}, {args.steps} steps (Adam {args.steps // 4}, then "
              f"{args.optimizer}), knots changed every {args.every}{' keeping the curvature' if args.keep_curvature else ''}")
    print("| problem | variant | params | rel L2 | vs uniform | wall time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = next((b["rel_l2"] for b in rows if b["problem"] == r["problem"] and b["variant"] == "uniform"), float("nan"))
        print(f"| {r['problem']} | {r['variant']} | {r['n_params']} | {r['rel_l2']:.3g} | {r['rel_l2'] / base:.2f} | {r['wall_time_s']:.0f} s |")
    print(f"wrote {out / 'knots_study.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
