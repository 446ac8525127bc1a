"""Print when a run first reached given relative L2 errors, from its results.h5.

    python scripts/time_to_accuracy.py outputs/poisson2d/<run>/results.h5 [--levels 1e-2 1e-3]

History is logged every ``trainer.log_every`` steps, so times are resolved to that interval.
"""
from __future__ import annotations

import argparse

import numpy as np

from kanpde.io import read_results


def first_reached(step: np.ndarray, time_s: np.ndarray, err: np.ndarray, level: float) -> tuple[int, float] | None:
    """(step, seconds) of the first logged error <= level, or None."""
    hit = np.nonzero(err <= level)[0]
    return (int(step[hit[0]]), float(time_s[hit[0]])) if hit.size else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="results.h5 files")
    ap.add_argument("--levels", nargs="+", type=float, default=[1e-2, 1e-3])
    args = ap.parse_args()
    for path in args.results:
        res = read_results(path)
        h, a = res["history"], res["attrs"]
        print(f"{path}: {a['problem']} {a['model']} n_params={a['n_params']} final rel_l2={a['rel_l2']:.3e} "
              f"mse={a['mse']:.3e} in {a['wall_time_s']:.1f}s ({a['steps']} steps)")
        for level in args.levels:
            hit = first_reached(h["step"], h["time_s"], h["rel_l2"], level)
            print(f"  rel_l2 <= {level:g}: " + (f"step {hit[0]}, {hit[1]:.1f}s" if hit else "not reached"))


if __name__ == "__main__":
    main()
