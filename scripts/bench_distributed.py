"""Data-parallel scaling on one machine: the same run in 1 process and under torchrun in N, one thread each.

    python scripts/bench_distributed.py --points 20000 200000 --ranks 2 --steps 30

For each point count it runs ``python -m kanpde problem=poisson2d`` (a KAN [2,10,1], Adam) once in one
process and once as ``torchrun --nproc_per_node=<ranks>``, and prints ms per step from results.h5.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from kanpde.io import read_results


def ms_per_step(points: int, ranks: int, steps: int, work: Path) -> float:
    out = work / f"{points}-{ranks}"
    args = ["problem=poisson2d", f"problem.n_interior={points}", "trainer.optimizer=adam", f"trainer.steps={steps}",
            "trainer.progress=false", "plots=false", "trainer.device=cpu", "threads=1", "trainer.grid_extension.at=[]",
            "trainer.grid_extension.grids=[]", f"hydra.run.dir={out}"]
    launch = [sys.executable, "-m", "kanpde"] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                                 f"--nproc_per_node={ranks}", "-m", "kanpde"]
    proc = subprocess.run([*launch, *args], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"bench_distributed: {points} points on {ranks} rank(s) failed:\n{proc.stderr[-2000:]}")
    attrs = read_results(out / "results.h5")["attrs"]
    return 1000.0 * attrs["wall_time_s"] / attrs["steps"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"| PDE points | 1 process (ms/step) | {args.ranks} ranks (ms/step) | speed-up |")
        print("|---|---|---|---|")
        for n in args.points:
            one, many = ms_per_step(n, 1, args.steps, Path(tmp)), ms_per_step(n, args.ranks, args.steps, Path(tmp))
            print(f"| {n:,} | {one:.1f} | {many:.1f} | {one / many:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
