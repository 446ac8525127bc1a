"""The README's catalogue table from a sweep over problems × {kan, mlp}: one row per problem with the
default KAN's and the MLP's parameters, relative L2 error and wall time, beside the published figures.

    python -m kanpde -m hydra/launcher=parallel hydra.launcher.n_jobs=2 problem=<p1>,<p2>,... model=kan,mlp \\
        trainer.progress=false plots=false hydra.sweep.dir=multirun/catalogue
    python scripts/catalogue_table.py multirun/catalogue
    python scripts/catalogue_table.py multirun/catalogue --presets literature   # + the <problem>_best presets' column

``--presets`` reads the runs ``scripts/reproduce_literature.py --out <dir>`` writes (``<dir>/runs/<problem>`` for
the KAN preset, ``<dir>/runs/<problem>_mlp`` for ``--model mlp``) and adds their rel L2 as "KAN / MLP".
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kanpde.experiment.catalogue import describe, load_problem, problem_configs  # noqa: E402
from kanpde.analysis.compare import load_runs  # noqa: E402
from kanpde.io import read_results  # noqa: E402


def _err(v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.1e}"


def _published(rows: list[dict]) -> str:
    out = []
    for p in rows:
        n = p.get("params")
        size = f", {n:,} params" if isinstance(n, int) else f", {n} params" if n else ""
        metric = "" if p["metric"] == "rel_l2" else f"{p['metric'].upper()} "
        out.append(f"{p['method']} {metric}{p['value']:.2e}{size}")
    return "; ".join(out) or "—"


def extras(run_dir: Path) -> str:
    """Per-output errors and learned coefficients, where a run has them."""
    a = read_results(run_dir / "results.h5")["attrs"]
    outputs = str(a["outputs"]).split(",")
    per_output = sorted((k[7:] for k in a if k.startswith("rel_l2_")), key=lambda o: outputs.index(o) if o in outputs else len(outputs))
    parts = [f"{o} {_err(float(a['rel_l2_' + o]))}" for o in per_output]
    parts += [f"{k[8:-8]} rel. err. {float(v):.1e}" for k, v in a.items() if k.startswith("unknown_") and k.endswith("_rel_err")]
    return ", ".join(parts)


def preset_cell(presets: Path, problem: str) -> str:
    """The ``<problem>_best`` preset's rel L2 with the KAN and with the MLP, "—" where that run is missing or failed."""
    cells = []
    for name in (problem, f"{problem}_mlp"):
        path = presets / "runs" / name / "results.h5"
        if not path.is_file():
            cells.append("—")
            continue
        a = read_results(path)["attrs"]
        cells.append(_err(float(a["rel_l2"])) if a["status"] == "ok" else str(a["status"]))
    return "—" if cells == ["—", "—"] else " / ".join(cells)


def table(sweep_dir: Path, presets: Path | None = None) -> str:
    runs = [r for r in load_runs(sweep_dir)]
    by = {}
    for r in runs:
        by.setdefault(r.row["problem"], {})[r.row["family"]] = r
    order = [p for p in problem_configs() if p in by]
    head = ["problem", "KAN params", "KAN rel L2", "KAN time", "MLP params", "MLP rel L2", "MLP time"]
    head += ["best preset: KAN / MLP"] * (presets is not None) + ["published (rel L2 unless named)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        cells = [f"`{name}`"]
        for family in ("kan", "mlp"):
            r = by[name].get(family)
            if r is None or r.row["status"] != "ok":
                cells += ["—", r.row["status"] if r else "not run", "—"]
                continue
            extra = extras(sweep_dir / r.row["run_dir"])
            cells += [f"{r.row['n_params']:,}", _err(r.row["rel_l2"]) + (f" ({extra})" if extra else ""), f"{r.row['wall_time_s']:.0f} s"]
        if presets is not None:
            cells.append(preset_cell(presets, name))
        cells.append(_published(describe(load_problem(name))["published"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--presets", type=Path, help="a reproduce_literature.py output directory: adds the presets' column")
    args = parser.parse_args()
    for d in (args.sweep_dir, args.presets):
        if d is not None and not d.is_dir():
            parser.error(f"no such directory: {d}")
    print(table(args.sweep_dir, args.presets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
