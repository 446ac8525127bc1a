"""Reproduce the KAN paper's §3.4 comparison (Liu et al. 2024, Fig. 3.3): KANs against MLPs on poisson2d.

    python scripts/reproduce_poisson_scaling.py --quick      # about 7 minutes on 2 CPU cores
    python scripts/reproduce_poisson_scaling.py              # the full sweep: meant for a GPU or a cluster
    python scripts/reproduce_poisson_scaling.py --launcher slurm -- hydra.launcher.partition=gpu

It runs two Hydra sweeps into one directory, ``+experiment=poisson_scaling`` (KAN [2,5,1], [2,7,1],
[2,10,1] with grid extension; each grid stage is a scaling point) and ``+experiment=poisson_scaling_mlp``
(MLPs of depth 2-5 and width 10-100), then ``kanpde.analysis.compare`` on it.  Both sweeps take their
points, loss weights, optimiser, step budget, precision and seeds from the same config
(``conf/comparison/poisson_scaling.yaml``); ``--quick`` shrinks them with one list of overrides applied
to both sides alike.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_overrides(stage_steps: int, grids: list[int]) -> tuple[list[str], list[str], list[str]]:
    """(shared, KAN-only, MLP-only) overrides of the quick mode: fewer points, grids, widths and one seed."""
    shared = [
        "problem.n_interior=2000", "problem.n_boundary=200",
        f"trainer.adam_steps={max(1, stage_steps // 2)}", f"trainer.steps={stage_steps * (len(grids) + 1)}",
        "seed=0",
    ]
    at = ",".join(str(stage_steps * (i + 1)) for i in range(len(grids)))
    kan = [f"trainer.grid_extension.at=[{at}]", f"trainer.grid_extension.grids=[{','.join(map(str, grids))}]"]
    # the slowest job (the paper's reference MLP) first, so parallel workers finish together
    mlp = ["model.width=[2,100,100,100,1],[2,10,1],[2,100,1],[2,10,10,1],[2,50,50,1],[2,20,20,20,1],[2,20,20,20,20,1]"]
    return shared, kan, mlp


def sweep(experiment: str, out: Path, launcher: str | None, overrides: list[str]) -> int:
    """Run one Hydra multirun of ``experiment`` into ``out``; returns its exit status."""
    cmd = [sys.executable, "-m", "kanpde", "-m", f"+experiment={experiment}", f"hydra.sweep.dir={out}", *overrides]
    if launcher:
        cmd.insert(4, f"hydra/launcher={launcher}")
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2000 points, G 3->6->12->24 (1000 steps), 7 MLPs, one seed (~7 min on 2 cores)")
    ap.add_argument("--out", type=Path, default=None, help="sweep directory (default multirun/poisson_scaling/<mode>_<time>)")
    ap.add_argument("--launcher", default=None,
                    help="Hydra launcher: parallel (joblib, the default when installed), slurm, slurm_local, basic (one job at a time)")
    ap.add_argument("--stage-steps", type=int, default=250, help="quick mode: steps per grid stage (default 250)")
    ap.add_argument("extra", nargs="*", help="further Hydra overrides for both sweeps (after --)")
    args = ap.parse_args(argv)

    launcher = args.launcher
    if launcher is None:
        launcher = "parallel" if importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") else "basic"
        if launcher == "basic":
            print("note: hydra-joblib-launcher is not installed (pip install -e '.[sweep]'); jobs run one at a time", flush=True)
    out = args.out or ROOT / "multirun" / "poisson_scaling" / f"{'quick' if args.quick else 'full'}_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    out = out.resolve()
    shared, kan, mlp = quick_overrides(args.stage_steps, [6, 12, 24]) if args.quick else ([], [], [])
    shared += args.extra
    launch = None if launcher == "basic" else launcher

    t0 = time.perf_counter()
    codes = [sweep("poisson_scaling", out, launch, shared + kan), sweep("poisson_scaling_mlp", out, launch, shared + mlp)]
    elapsed = time.perf_counter() - t0

    from kanpde.analysis.compare import main as compare_main  # after the sweeps: importing torch is not needed before
    status = compare_main([str(out)])
    print(f"reproduce_poisson_scaling: sweeps took {elapsed:.0f} s; report {out / 'comparison.md'}")
    if any(codes):
        print(f"reproduce_poisson_scaling: a sweep reported failed jobs (exit codes {codes}); see comparison.md", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
