"""Run the ``<problem>_best`` presets and compare each with the best published PIKAN and PINN.

    python scripts/reproduce_literature.py --quick --jobs 2     # small step budgets (QUICK), two runs at a time
    python scripts/reproduce_literature.py                      # the presets' full budgets: meant for a GPU
    python scripts/reproduce_literature.py --problems burgers1d allen_cahn1d --out literature_gpu
    python scripts/reproduce_literature.py --dry-run            # print the commands only
    python scripts/reproduce_literature.py --collect            # tables from runs made elsewhere, e.g. a cluster sweep:

    python -m kanpde -m '+experiment=poisson2d_best,helmholtz2d_best,diffusion1d_best,burgers1d_best,allen_cahn1d_best' \
        hydra/launcher=slurm hydra.sweep.dir=literature/runs 'hydra.sweep.subdir=${hydra:runtime.choices.problem}'

Each problem runs as ``python -m kanpde +experiment=<problem>_best`` into ``<out>/runs/<problem>``
(its output in ``<out>/runs/<problem>.log``), at most ``--jobs`` at a time (one torch thread each when
``--jobs`` > 1).  Then one row per problem, our error beside the best published PIKAN and PINN (the
lowest ``family`` "kan" and "mlp" entries of each problem class's ``published``, collected in ``LITERATURE``)
and the target each preset is meant to meet, goes to ``<out>/literature.csv`` and ``<out>/literature.md``
(also printed).  Exit status 0 when every run succeeded, 1 otherwise (the tables are written either
way), 2 for an unknown problem name.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kanpde.io import atomic_path, read_results  # noqa: E402
from kanpde.problems.heat import Diffusion1D  # noqa: E402
from kanpde.problems.helmholtz import Helmholtz2D  # noqa: E402
from kanpde.problems.poisson import Poisson2D  # noqa: E402
from kanpde.problems.transport import AllenCahn1D, Burgers1D, Convection1D  # noqa: E402
from kanpde.problems.waves import KleinGordon1D, Wave1D  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Published(NamedTuple):
    """One published figure, as an entry of a problem class's ``published``: the error, the model's size
    (a count, the paper's wording such as "~1.7k", or None where it gives none), the method and its source."""

    value: float
    params: int | str | None
    method: str
    source: str

    def size(self) -> int | str:
        """The parameter count (or its wording), "" where there is none."""
        return self.params if self.params is not None else ""


class Target(NamedTuple):
    """What a ``<problem>_best`` preset is meant to reach: ``metric <= value`` with at most ``params``
    parameters (None: no bound), or with exactly the KAN ``width`` where one is given."""

    metric: str
    value: float
    params: int | None
    width: tuple[int, ...] | None = None

    def size(self) -> int | str:
        """The largest parameter count allowed, or the KAN's width."""
        if self.width is not None:
            return f"KAN [{','.join(map(str, self.width))}]"
        return self.params if self.params is not None else ""


# The problem classes whose ``published`` figures (the single source) each preset is compared with.
PROBLEMS: dict[str, type] = {"poisson2d": Poisson2D, "helmholtz2d": Helmholtz2D, "diffusion1d": Diffusion1D,
                             "burgers1d": Burgers1D, "allen_cahn1d": AllenCahn1D, "wave1d": Wave1D,
                             "klein_gordon1d": KleinGordon1D, "convection1d": Convection1D}

# What each preset is meant to reach (ours, not a published figure).
TARGETS: dict[str, Target] = {
    "poisson2d": Target("mse", 1e-8, None, width=(2, 10, 1)),
    "helmholtz2d": Target("rel_l2", 5e-4, 2_000),  # a1 = 1, a2 = 4
    "diffusion1d": Target("rel_l2", 1e-4, 2_000),
    "burgers1d": Target("rel_l2", 1e-5, 5_000),  # nu = 0.01/pi
    "allen_cahn1d": Target("rel_l2", 1e-4, 25_000),  # periodic, D = 1e-4
    "wave1d": Target("rel_l2", 1e-4, None),
    "klein_gordon1d": Target("rel_l2", 1e-4, None),
    "convection1d": Target("rel_l2", 1e-4, None),  # beta = 30
}

# ``--model mlp``: the same presets with an MLP of about the preset KAN's size (the comparison that matters).
MLP_WIDTH: dict[str, list[int]] = {p: [2, 30, 30, 30, 1] for p in PROBLEMS} | {"poisson2d": [2, 20, 20, 20, 1],
                                                                            "helmholtz2d": [2, 20, 20, 20, 1],
                                                                            "diffusion1d": [2, 20, 20, 20, 1]}


def best_published(problem: type, family: str, metric: str) -> Published | None:
    """The lowest ``metric`` among ``problem.published`` entries of ``family`` ("kan": PIKAN, "mlp": PINN),
    None where there is none."""
    found = [e for e in problem.published if e.get("family") == family and e["metric"] == metric]
    if not found:
        return None
    e = min(found, key=lambda e: e["value"])
    return Published(e["value"], e.get("params"), e["method"], e.get("source", ""))


def literature() -> dict[str, dict]:
    """Per problem: its metric, the best published PIKAN and PINN (from the problem classes) and our target."""
    return {p: {"metric": TARGETS[p].metric, "pikan": best_published(cls, "kan", TARGETS[p].metric),
                "pinn": best_published(cls, "mlp", TARGETS[p].metric), "target": TARGETS[p]}
            for p, cls in PROBLEMS.items()}


LITERATURE: dict[str, dict] = literature()

# Quick-mode budgets (--quick): per-problem Hydra overrides appended to each preset, sized so that all
# eight finish in under 20 minutes on two CPU cores (17 min one after another on one core: docs/hard-pdes.md).
QUICK: dict[str, list[str]] = {
    "poisson2d": ["trainer.steps=2000"],
    "helmholtz2d": ["trainer.steps=2000"],
    "diffusion1d": ["trainer.steps=2000"],
    "burgers1d": ["trainer.steps=1500", "problem.n_interior=4000"],
    "allen_cahn1d": ["trainer.steps=1500", "problem.n_interior=4000"],
    # wave1d keeps the preset's 5,000 points: on 3,000 its Chebyshev KAN had not started to learn after 1,500 steps (1.34)
    "wave1d": ["trainer.steps=1500", "trainer.adam_steps=500"],
    "klein_gordon1d": ["trainer.steps=1500", "trainer.adam_steps=500", "problem.n_interior=3000"],
    "convection1d": ["trainer.steps=300", "trainer.adam_steps=100"],
}

COLUMNS = ["problem", "model", "params", "steps", "wall_time_s", "device", "threads", "metric", "ours",
           "pikan", "pikan_params", "pikan_source", "ratio_pikan", "pinn", "pinn_params", "pinn_source", "ratio_pinn",
           "target", "target_params", "target_met", "status"]
HEADERS = {"wall_time_s": "time (s)", "ours": "ours", "pikan": "best PIKAN", "pikan_params": "PIKAN params",
           "pikan_source": "PIKAN source", "ratio_pikan": "ours / PIKAN", "pinn": "best PINN", "pinn_params": "PINN params",
           "pinn_source": "PINN source", "ratio_pinn": "ours / PINN", "target_params": "max params", "target_met": "target met"}


def mlp_overrides(problem: str) -> list[str]:
    """What turns a KAN preset into the same recipe for the MLP of ``MLP_WIDTH``: the model, and off the KAN-only
    steps an MLP has nothing for (the grid-extension schedule and adaptive knots)."""
    return ["model=mlp", f"model.width=[{','.join(map(str, MLP_WIDTH[problem]))}]", "trainer.grid_extension.at=[]",
            "trainer.grid_extension.grids=[]", "trainer.knots.method=none"]


def run_name(problem: str, model: str) -> str:
    """The run directory's name under ``<out>/runs``: the problem, with ``_mlp`` for ``--model mlp``."""
    return problem if model == "preset" else f"{problem}_{model}"


def commands(problems: list[str], out: str | os.PathLike, quick: bool, jobs: int, model: str = "preset") -> dict[str, list[str]]:
    """The command line of each problem's run: its preset into ``<out>/runs/<problem>``, one thread per job
    when several run at once, the ``QUICK`` overrides with ``quick``, and with ``model="mlp"`` an MLP of
    ``MLP_WIDTH`` in place of the preset's KAN (into ``<out>/runs/<problem>_mlp``)."""
    cmds = {}
    for p in problems:
        extra = (["threads=1"] if jobs > 1 else []) + (QUICK.get(p, []) if quick else [])
        if model == "mlp":
            extra = [*mlp_overrides(p), *extra]
        # trainer.resume=never: a measurement starts from step 0 (a checkpoint left by a killed run would shorten its time)
        cmds[p] = [sys.executable, "-m", "kanpde", f"+experiment={p}_best", f"hydra.run.dir={out}/runs/{run_name(p, model)}",
                   "trainer.progress=false", "trainer.resume=never", *extra]
    return cmds


def run_one(problem: str, cmd: list[str], log: Path) -> int:
    """Run one command with its output to ``log``; returns its exit status (progress lines name the script run)."""
    t0 = time.perf_counter()
    prog = Path(sys.argv[0]).stem or "reproduce_literature"
    print(f"{prog}: start {problem}: {shlex.join(cmd)}", flush=True)
    with log.open("w") as fh:
        code = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT).returncode
    print(f"{prog}: {problem} {'done' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - t0:.0f} s (log {log})",
          flush=True)
    return code


def run_all(cmds: dict[str, list[str]], out: Path, jobs: int, model: str = "preset") -> dict[str, int]:
    """Run the commands, at most ``jobs`` at a time; returns each problem's exit status."""
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for p in cmds:  # a stale results file must not stand in for a run that fails before writing one
        (out / "runs" / run_name(p, model) / "results.h5").unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {p: pool.submit(run_one, p, cmd, out / "runs" / f"{run_name(p, model)}.log") for p, cmd in cmds.items()}
        return {p: f.result() for p, f in futures.items()}


def _ratio(ours: float, ref: Published | None) -> float:
    return ours / ref.value if ref is not None and math.isfinite(ours) else math.nan


def rows(problems: list[str], out: str | os.PathLike, model: str = "preset") -> list[dict]:
    """One row per problem from ``<out>/runs/<problem>/results.h5`` beside its ``LITERATURE`` entry; a missing
    or failed run gives NaN numbers, target_met "no" and the reason in ``status``."""
    table = []
    for p in problems:
        lit = LITERATURE[p]
        metric, pikan, pinn, target = lit["metric"], lit["pikan"], lit["pinn"], lit["target"]
        row = {"problem": p, "model": "", "params": math.nan, "steps": math.nan, "wall_time_s": math.nan, "device": "",
               "threads": math.nan, "metric": metric, "ours": math.nan,
               "pikan": pikan.value if pikan else math.nan, "pikan_params": pikan.size() if pikan else "",
               "pikan_source": f"{pikan.method}, {pikan.source}" if pikan else "",
               "ratio_pikan": math.nan,
               "pinn": pinn.value if pinn else math.nan, "pinn_params": pinn.size() if pinn else "",
               "pinn_source": f"{pinn.method}, {pinn.source}" if pinn else "", "ratio_pinn": math.nan,
               "target": target.value, "target_params": target.size(), "target_met": "no", "status": ""}
        name = run_name(p, model)
        path = Path(out) / "runs" / name / "results.h5"
        if not path.is_file():
            row["status"] = f"missing: no results.h5 (see runs/{name}.log)"
            table.append(row)
            continue
        a = read_results(path)["attrs"]
        row.update(model=str(a["model"]), device=str(a["device"]))
        ours = float(a[metric])
        if a["status"] != "ok":
            message = str(a["message"])
            row["status"] = f"{a['status']}" + (f": {message}" if message else "")
        elif not math.isfinite(ours):
            row["status"] = f"failed: {metric} is {ours}"
        else:
            row.update(params=int(a["n_params"]), steps=int(a["steps"]), wall_time_s=float(a["wall_time_s"]),
                       threads=int(a["threads"]) or math.nan, ours=ours, status="ok",
                       ratio_pikan=_ratio(ours, pikan), ratio_pinn=_ratio(ours, pinn))
            width = tuple(int(w) for w in a["width"])
            met = (ours <= target.value
                   and (target.params is None or row["params"] <= target.params)
                   and (target.width is None or (str(a["family"]).startswith("kan") and width == target.width)))
            row["target_met"] = "yes" if met else "no"
        table.append(row)
    return table


def _cell(key: str, v) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "—"
    if key in ("ours", "pikan", "pinn", "target"):
        return f"{v:.2e}"
    if key.startswith("ratio_"):
        return f"{v:.2g}"
    if key == "wall_time_s":
        return f"{v:.0f}"
    if key in ("params", "steps", "threads") or isinstance(v, int):  # counts; the *_params columns may be text
        return f"{int(v):,}"
    return str(v).replace("|", "\\|") or "—"


def markdown(rows: list[dict], header_lines: list[str]) -> str:
    """``header_lines`` (one paragraph) and a Markdown table of ``rows``: errors to 3 significant digits,
    ratios to 2."""
    head = [HEADERS.get(c, c) for c in COLUMNS]
    lines = [*header_lines, ""] if header_lines else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c, r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out: str | os.PathLike, header: list[str]) -> tuple[Path, Path]:
    """Write ``<out>/literature.csv`` and ``<out>/literature.md`` atomically; returns their paths."""
    out = Path(out)
    csv_path, md_path = out / "literature.csv", out / "literature.md"
    with atomic_path(csv_path) as tmp:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows({c: r[c] for c in COLUMNS} for r in rows)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(rows, header), encoding="utf-8")
    return csv_path, md_path


def hardware() -> str:
    """The processor, its core count and the CUDA device, where there is one."""
    import torch

    text = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small step budgets of QUICK instead of the presets' own")
    ap.add_argument("--out", type=Path, default=Path("literature"), help="output directory (default literature)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1; with more, one torch thread each)")
    ap.add_argument("--problems", nargs="+", default=list(LITERATURE), metavar="P",
                    help=f"problems to run (default all: {' '.join(LITERATURE)})")
    ap.add_argument("--model", choices=("preset", "mlp"), default="preset",
                    help="preset: each preset's own model (a KAN); mlp: an MLP of about its size (MLP_WIDTH), same recipe")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and exit")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: build the tables from <out>/runs/<problem>/results.h5 (e.g. written by a sweep on a cluster)")
    args = ap.parse_args(argv)

    unknown = [p for p in args.problems if p not in LITERATURE]
    if unknown:
        print(f"reproduce_literature: unknown problem(s) {', '.join(unknown)}; known: {', '.join(LITERATURE)}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("reproduce_literature: --jobs must be at least 1", file=sys.stderr)
        return 2
    problems = list(dict.fromkeys(args.problems))
    out = args.out.resolve()
    cmds = commands(problems, out, args.quick, args.jobs, args.model)
    if args.dry_run:
        for cmd in cmds.values():
            print(shlex.join(cmd))
        return 0

    codes = {p: 0 for p in problems} if args.collect else run_all(cmds, out, args.jobs, args.model)
    table = rows(problems, out, args.model)
    mode = "collected from existing runs (their device and threads are in the table)" if args.collect else \
        f"{'quick' if args.quick else 'full'}; hardware: {hardware()}"
    header = [f"Command: `{shlex.join(['python', 'scripts/reproduce_literature.py', *argv])}`  ",
              f"Mode: {mode}; date: {time.strftime('%Y-%m-%d %H:%M')}"]
    csv_path, md_path = write_tables(table, out, header)
    print(markdown(table, header), end="")
    print(f"reproduce_literature: tables in {csv_path} and {md_path}")
    failed = [r["problem"] for r in table if codes.get(r["problem"]) != 0 or r["status"] != "ok"]
    if failed:
        print(f"reproduce_literature: failed or missing runs: {', '.join(failed)} (logs in {out / 'runs'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
