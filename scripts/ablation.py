"""Ablation of the ``<problem>_best`` presets: each technique a preset uses, turned off one at a time
(and vRBA's exponential attention turned on where the preset uses plain RBA), same points, seed and budget.

    python scripts/ablation.py --quick --jobs 2                       # burgers1d and allen_cahn1d, quick budgets
    python scripts/ablation.py --quick --problems convection1d --model mlp
    python scripts/ablation.py --dry-run --problems wave1d            # the commands only

The variants come from the composed preset (with the ``--quick`` budget of
``reproduce_literature.QUICK``), so a preset that changes changes its ablation:

* ``preset``             the preset as it is;
* ``no-quasi-newton``      L-BFGS in place of the preset's dense quasi-Newton method (same Adam warm-up);
* ``no-rba``               no residual-based attention; ``vrba``: vRBA's exponential weights instead of RBA's;
* ``no-exact-periodic``    the periodic condition as a loss term instead of the periodic embedding;
* ``no-hard-constraints``  initial and boundary values as loss terms;
* ``no-fourier``           no Fourier features;
* ``no-balance``           no loss balancing;
* ``no-marching``          one window over the whole time range, with all the windows' steps.

Each run is ``python -m kanpde +experiment=<problem>_best <overrides>`` into ``<out>/runs/<problem>/<variant>``
(``--model mlp``: the MLP of ``reproduce_literature.MLP_WIDTH``, into ``<problem>_mlp``), at most ``--jobs``
at a time with one thread each; runs whose ``results.h5`` says ``ok`` are not run again.  The table (rel L2,
its ratio to the preset's, parameters, time) goes to ``<out>/ablation.csv`` and ``<out>/ablation.md`` and is
printed.  Exit status 0 when every run succeeded, 1 otherwise, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import csv
import math
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from reproduce_literature import LITERATURE, QUICK, hardware, mlp_overrides, run_one  # noqa: E402

from kanpde.io import atomic_path, read_results  # noqa: E402

QUASI_NEWTON = ("bfgs", "ssbfgs", "ssbroyden")
COLUMNS = ["problem", "model", "variant", "overrides", "rel_l2", "vs_preset", "params", "steps", "wall_time_s", "status"]


def preset_config(problem: str, quick: bool, extra: list[str] = ()):
    """The composed ``<problem>_best`` config (with the quick budget and ``extra`` overrides)."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={problem}_best", *(QUICK.get(problem, []) if quick else []), *extra])


def variants(cfg, model: str = "preset") -> dict[str, list[str]]:
    """Per variant name, the overrides that make it from the preset ``cfg`` (``preset``: none); ``model="mlp"``:
    only the variants an MLP has (not the KAN's edge basis)."""
    tr, prob = cfg.trainer, cfg.problem
    out: dict[str, list[str]] = {"preset": []}
    if model == "preset":  # the KAN's own tools
        if cfg.model.get("basis", "bspline") != "bspline":
            out["bspline-edges"] = ["model.basis=bspline"]
        if tr.knots.method != "none":
            out["uniform-knots"] = ["trainer.knots.method=none"]
    method = str(tr.optimizer).removeprefix("adam_")
    if method in QUASI_NEWTON:
        out["no-quasi-newton"] = [f"trainer.optimizer={'adam_lbfgs' if str(tr.optimizer).startswith('adam_') else 'lbfgs'}"]
        for group in ("sampler", "knots", "grid_extension"):  # L-BFGS keeps no inverse Hessian to carry over
            if tr[group].get("keep_curvature"):
                out["no-quasi-newton"].append(f"trainer.{group}.keep_curvature=false")
    if tr.loss.rba:
        out["no-rba"] = ["trainer.loss.rba=false"]
        if tr.loss.rba_potential == "linear":
            out["vrba"] = ["trainer.loss.rba_potential=exponential"]
    if tr.sampler.adaptive != "none":
        out["no-rad"] = ["trainer.sampler.adaptive=none", "trainer.sampler.keep_curvature=false"]
        if tr.sampler.get("keep_curvature"):
            out["no-keep-curvature"] = ["trainer.sampler.keep_curvature=false"]
    if prob.get("exact_periodic"):
        out["no-exact-periodic"] = ["problem.exact_periodic=false"]
    if prob.get("hard_constraints"):
        out["no-hard-constraints"] = ["problem.hard_constraints=false"]
    fourier = (cfg.model.get("embedding") or {}).get("fourier")
    if fourier and fourier.get("inputs"):
        out["no-fourier"] = ["model.embedding.fourier.inputs=[]"]
    if tr.loss.balance != "none":
        out["no-balance"] = ["trainer.loss.balance=none"]
    windows = int(tr.marching.windows) if not tr.marching.breaks else len(tr.marching.breaks) + 1
    if windows > 1:  # the same budget in one window
        out["no-marching"] = ["trainer.marching.windows=1", "trainer.marching.breaks=[]", f"trainer.steps={tr.steps * windows}",
                            f"trainer.adam_steps={tr.adam_steps * windows}"]
    return out


def run_dir(out: Path, problem: str, model: str, variant: str) -> Path:
    return out / "runs" / (problem if model == "preset" else f"{problem}_{model}") / variant


def command(problem: str, model: str, variant: list[str], quick: bool, jobs: int, extra: list[str], where: Path) -> list[str]:
    """``python -m kanpde`` for one variant of one problem's preset."""
    mlp = mlp_overrides(problem) if model == "mlp" else []
    return [sys.executable, "-m", "kanpde", f"+experiment={problem}_best", *mlp, *(QUICK.get(problem, []) if quick else []),
            *(["threads=1"] if jobs > 1 else []), "trainer.progress=false", "trainer.resume=never", "plots=false", *extra,
            *variant, f"hydra.run.dir={where}"]


def done(where: Path) -> bool:
    results = where / "results.h5"
    return results.is_file() and read_results(results)["attrs"]["status"] == "ok"


def row(problem: str, model: str, variant: str, changes: list[str], where: Path) -> dict:
    """One line of the table from ``where/results.h5`` (NaN and the reason where the run has none or failed)."""
    r = {"problem": problem, "model": model, "variant": variant, "overrides": " ".join(changes), "rel_l2": math.nan,
         "vs_preset": math.nan, "params": 0, "steps": 0, "wall_time_s": math.nan, "status": "missing"}
    results = where / "results.h5"
    if results.is_file():
        a = read_results(results)["attrs"]
        basis = str(a.get("basis", "bspline"))  # named where a KAN's edges are not B-splines
        r.update(model=str(a["model"]) + ("" if basis in ("bspline", "") else f" {basis}"), rel_l2=float(a["rel_l2"]),
                 params=int(a["n_params"]), steps=int(a["steps"]), wall_time_s=float(a["wall_time_s"]), status=str(a["status"]))
    return r


def markdown(rows: list[dict], header: list[str]) -> str:
    lines = [*header, "", "| problem | model | variant | changed | rel L2 | × preset | params | steps | time (s) | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = f"{r['rel_l2']:.3g}" if math.isfinite(r["rel_l2"]) else "—"
        ratio = f"{r['vs_preset']:.2f}" if math.isfinite(r["vs_preset"]) else "—"
        secs = f"{r['wall_time_s']:.0f}" if math.isfinite(r["wall_time_s"]) else "—"
        changed = f"`{r['overrides']}`" if r["overrides"] else "—"
        lines.append(f"| {r['problem']} | {r['model']} | {r['variant']} | {changed} | {err} | {ratio} | {r['params']:,} | "
                     f"{r['steps']:,} | {secs} | {r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", nargs="+", default=["burgers1d", "allen_cahn1d"], metavar="P",
                    help=f"presets to ablate (default burgers1d allen_cahn1d; any of {' '.join(LITERATURE)})")
    ap.add_argument("--model", choices=("preset", "mlp"), default="preset", help="the preset's KAN, or the MLP of MLP_WIDTH")
    ap.add_argument("--quick", action="store_true", help="the small step budgets of reproduce_literature.QUICK")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (one torch thread each when more than 1)")
    ap.add_argument("--out", type=Path, default=Path("ablation"), help="output directory (default ablation)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    ap.add_argument("extra", nargs="*", help="overrides appended to every run (after --, e.g. -- problem.n_interior=500)")
    args = ap.parse_args(argv)
    unknown = [p for p in args.problems if p not in LITERATURE]
    if unknown:
        print(f"ablation: unknown problem(s) {', '.join(unknown)}; known: {', '.join(LITERATURE)}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("ablation: --jobs must be at least 1", file=sys.stderr)
        return 2
    out = args.out.resolve()
    jobs = []
    for p in dict.fromkeys(args.problems):
        for name, changes in variants(preset_config(p, args.quick, args.extra), args.model).items():
            where = run_dir(out, p, args.model, name)
            jobs.append((p, name, changes, where, command(p, args.model, changes, args.quick, args.jobs, args.extra, where)))
    if args.dry_run:
        for *_, cmd in jobs:
            print(shlex.join(cmd))
        return 0

    def execute(job) -> int:
        p, name, _, where, cmd = job
        if done(where):
            return 0
        where.mkdir(parents=True, exist_ok=True)
        (where / "results.h5").unlink(missing_ok=True)  # a failed run's stale file must not stand in for this one
        return run_one(f"{p} {name}", cmd, where.with_suffix(".log"))

    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(execute, jobs))
    rows = [row(p, args.model, name, changes, where) for p, name, changes, where, _ in jobs]
    for r in rows:
        base = next(b["rel_l2"] for b in rows if b["problem"] == r["problem"] and b["variant"] == "preset")
        r["vs_preset"] = r["rel_l2"] / base if r["status"] == "ok" and math.isfinite(base) and base > 0 else math.nan
    header = [f"Command: `{shlex.join(['python', 'scripts/ablation.py', *argv])}`  ",
              f"Budget: {'quick' if args.quick else 'full'}; hardware: {hardware()}; date: {time.strftime('%Y-%m-%d %H:%M')}"]
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "ablation.csv") as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    text = markdown(rows, header)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(text, end="")
    bad = [f"{r['problem']} {r['variant']}" for r, code in zip(rows, codes) if code != 0 or r["status"] != "ok"]
    if bad:
        print(f"ablation: failed or missing runs: {', '.join(bad)} (logs beside their run directories)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
