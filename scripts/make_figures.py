"""Regenerate the README's figures in docs/img/ with one command.

    python scripts/make_figures.py                      # all three (about 7 minutes on 2 shared CPU cores)
    python scripts/make_figures.py --only solution activations
    python scripts/make_figures.py --stage-steps 250    # the scaling sweep at reproduce_poisson_scaling's --quick budget
    python scripts/make_figures.py --reuse              # copy from the runs in --work that already finished

It runs, as subprocesses of ``python -m kanpde`` (one torch thread each):

- ``solution``: ``python -m kanpde problem=poisson2d threads=1`` -> its ``solution.png``
  (prediction, exact solution, pointwise error) becomes ``docs/img/poisson2d_solution.png``;
- ``activations``: ``python -m kanpde problem=poisson2d_sin +experiment=symbolic threads=1`` -> its
  ``activations.png`` (every edge of the pruned, symbolic KAN) becomes ``docs/img/symbolic_activations.png``;
- ``scaling``: ``python scripts/reproduce_poisson_scaling.py --quick --stage-steps N -- threads=1`` (KANs
  against MLPs on poisson2d, then ``python -m kanpde.analysis.compare``) -> its ``scaling.png`` (error
  against parameter count with fitted slopes) becomes ``docs/img/poisson_scaling.png``.

The PNGs are copied as they are (no resampling, no image library); the script prints each one's size
and warns above 150 KB.  Run directories go under ``--work`` (default ``outputs/figures``, ignored by git).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
LIMIT_KB = 150


def figures(work: Path, stage_steps: int) -> dict[str, tuple[list[str], Path, str]]:
    """name -> (command, PNG it writes, file name under docs/img)."""
    py = sys.executable
    return {
        "solution": ([py, "-m", "kanpde", "problem=poisson2d", "threads=1", "trainer.progress=false",
                      f"hydra.run.dir={work / 'poisson2d'}"],
                     work / "poisson2d" / "solution.png", "poisson2d_solution.png"),
        "activations": ([py, "-m", "kanpde", "problem=poisson2d_sin", "+experiment=symbolic", "threads=1",
                         "trainer.progress=false", f"hydra.run.dir={work / 'symbolic'}"],
                        work / "symbolic" / "activations.png", "symbolic_activations.png"),
        "scaling": ([py, str(ROOT / "scripts" / "reproduce_poisson_scaling.py"), "--quick", "--stage-steps", str(stage_steps),
                     "--out", str(work / "scaling"), "--", "threads=1", "trainer.progress=false"],
                    work / "scaling" / "scaling.png", "poisson_scaling.png"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=["solution", "activations", "scaling"], default=None,
                    help="make only these figures (default: all three)")
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "figures", help="where the runs go (default outputs/figures)")
    ap.add_argument("--stage-steps", type=int, default=100,
                    help="scaling sweep: steps per grid stage, passed to reproduce_poisson_scaling.py --quick "
                         "(default 100, the figure in docs/img; 250 is that script's own --quick budget)")
    ap.add_argument("--reuse", action="store_true", help="do not rerun a figure whose PNG already exists in --work")
    args = ap.parse_args(argv)

    work = args.work.resolve()
    IMG.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, (cmd, png, target) in figures(work, args.stage_steps).items():
        if args.only and name not in args.only:
            continue
        if not (args.reuse and png.exists()):
            if name == "scaling" and (work / "scaling").exists():
                shutil.rmtree(work / "scaling")   # the comparison reads every run below it: start clean
            print("+", " ".join(cmd), flush=True)
            t0 = time.perf_counter()
            code = subprocess.run(cmd, cwd=ROOT).returncode
            print(f"make_figures: {name} took {time.perf_counter() - t0:.0f} s (exit {code})", flush=True)
            if not png.exists():
                print(f"make_figures: {name}: {png} was not written", file=sys.stderr)
                failed.append(name)
                continue
        shutil.copyfile(png, IMG / target)
        kb = (IMG / target).stat().st_size / 1024
        note = f"  (above {LIMIT_KB} KB)" if kb > LIMIT_KB else ""
        print(f"make_figures: docs/img/{target}: {kb:.0f} KB{note}", flush=True)
    if failed:
        print(f"make_figures: not made: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
