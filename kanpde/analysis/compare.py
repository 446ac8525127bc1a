"""Gather the ``results.h5`` of many runs (a sweep) into one comparison: table, scaling fits, plots, ``summary.h5``.

``python -m kanpde.analysis.compare <sweep dir>`` (or :func:`compare`) writes into that directory:

- ``comparison.csv`` / ``comparison.md``: one row per run (:data:`COLUMNS`); the Markdown report also
  summarises seeds (median, min–max), the fitted scaling slopes, the training settings that were
  held equal or differed, and every run that failed or never finished;
- ``scaling.png``: MSE and H1² against parameter count, one series per family (KAN per width, MLP per
  depth), median with min–max bars over seeds, the power-law slope of each series' best-error
  frontier, and the N⁻⁴ line of the KAN paper's Fig. 3.3;
- ``dynamics.png``: error against training step and against wall time for chosen runs;
- ``summary.h5``: the same numbers.

A KAN trained with grid extension contributes one scaling point per grid stage (its ``stages/``
group), as in the paper, where each point of a KAN curve is a grid size reached in one run.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
from omegaconf import OmegaConf

from kanpde.analysis import figures as plot
from kanpde.io import atomic_path, read_results

COLUMNS = ("problem", "family", "width", "grid", "k", "n_params", "rel_l2", "mse", "h1_sq",
           "wall_time_s", "ms_per_step", "seed", "status", "run_dir")
"""The columns of ``comparison.csv``, in order."""

SETTINGS = ("optimizer", "steps", "adam_steps", "lr", "grid_schedule", "n_interior", "n_boundary", "dtype", "device", "threads")
"""Training settings read from each run, reported as held equal or differing."""

ERRORS = ("mse", "h1_sq", "rel_l2")


@dataclass
class RunRecord:
    """One run as the comparison sees it: its table row, settings, grid stages, history and why it is not ``ok``."""

    row: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    points_hash: str = ""
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    note: str = ""

    @property
    def series(self) -> str:
        return series_label(self.row["family"], self.row["width"])


@dataclass
class Comparison:
    """What :func:`compare` found and wrote."""

    runs: list[RunRecord]
    scaling: dict[tuple[str, str], dict[str, np.ndarray]]
    fits: dict[tuple[str, str], dict[str, float]]
    files: dict[str, Path]

    def count(self, status: str) -> int:
        return sum(r.row["status"] == status for r in self.runs)


def width_text(width: Iterable[int] | None) -> str:
    """``[2, 10, 1]`` -> ``"[2,10,1]"`` (empty for no width); ``["in", 10, "out"]`` -> ``"[in,10,out]"``."""
    # a config not yet resolved may hold the placeholders "in"/"out" (see kanpde.experiment.run.resolve_width)
    return "[" + ",".join(w if isinstance(w, str) else str(int(w)) for w in width) + "]" if width is not None and len(list(width)) else ""


def series_label(family: str, width: str) -> str:
    """The scaling-plot series of a run: a KAN per width, an MLP per depth (number of weight layers)."""
    if family == "mlp" and width:
        return f"MLP depth {width.count(',')}"
    return f"{family.upper()} {width}".strip()


# --- reading runs -------------------------------------------------------------------------------

def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory below ``root``: those holding a ``results.h5`` or a Hydra ``.hydra/config.yaml``."""
    dirs = {p.parent for p in root.rglob("results.h5")}
    dirs |= {p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"}
    return sorted(dirs)


def _blank_row(run_dir: str) -> dict[str, Any]:
    row = {c: math.nan for c in COLUMNS}
    row.update(problem="", family="", width="", grid=0, k=0, n_params=0, seed=-1, status="incomplete", run_dir=run_dir)
    return row


def _row_from_hydra(row: dict[str, Any], run_dir: Path) -> None:
    """Fill what a run was meant to be from its ``.hydra/`` files (for runs without a readable results file)."""
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        return
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
        hydra_path = run_dir / ".hydra" / "hydra.yaml"
        choices = OmegaConf.load(hydra_path).hydra.runtime.choices if hydra_path.is_file() else {}
    except Exception:  # an unreadable config leaves the row blank; the note already says the run is incomplete
        return
    model = cfg.get("model") or {}
    row["problem"] = choices.get("problem") or str((cfg.get("problem") or {}).get("_target_", "")).rpartition(".")[2].lower()
    basis = model.get("basis")
    row["family"] = str(model.get("_target_", "")).rpartition(".")[2].lower() + (f"-{basis}" if basis not in (None, "bspline") else "")
    row["width"] = width_text(model.get("width"))
    row["grid"], row["k"] = int(model.get("grid") or 0), int(model.get("k") or 0)
    row["seed"] = int(cfg.get("seed", -1))


def load_run(run_dir: Path, root: Path) -> RunRecord:
    """Read one run directory; an unreadable or missing ``results.h5`` gives an ``incomplete`` record with a note."""
    rel = run_dir.relative_to(root).as_posix()
    row = _blank_row(rel)
    path = run_dir / "results.h5"
    if not path.is_file():
        _row_from_hydra(row, run_dir)
        return RunRecord(row, note="no results.h5: the run is still going, was killed, or stopped before training (see its log)")
    try:
        res = read_results(path)
    except Exception as e:  # corrupt or truncated HDF5
        _row_from_hydra(row, run_dir)
        return RunRecord(row, note=f"results.h5 unreadable: {type(e).__name__}: {e}")
    a = res["attrs"]  # every RunAttributes field, defaults filled in by read_results
    steps = int(a["steps"])
    row.update(
        problem=str(a["problem"]), family=str(a["family"]), width=width_text(np.atleast_1d(a["width"])),
        grid=int(a["grid"]), k=int(a["k"]), n_params=int(a["n_params"]),
        **{e: float(a[e]) for e in ERRORS},
        wall_time_s=float(a["wall_time_s"]),
        ms_per_step=1000.0 * float(a["wall_time_s"]) / steps if steps else math.nan,
        seed=int(a["seed"]), status=str(a["status"]),
    )
    if row["status"] not in ("ok", "failed"):
        row["status"] = "incomplete"
    settings = {k: a[k] for k in SETTINGS if k in a}
    return RunRecord(row, settings, str(a["points_hash"]), res["stages"], res["history"],
                     note=str(a["message"]) if row["status"] != "ok" else "")


def load_runs(root: str | Path) -> list[RunRecord]:
    """Every run below ``root``, sorted by problem, family, parameter count, seed."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no sweep directory at {root}")
    runs = [load_run(d, root) for d in find_run_dirs(root)]
    if not runs:
        raise FileNotFoundError(f"no runs under {root}: no results.h5 and no .hydra/config.yaml below it")
    return sorted(runs, key=lambda r: (r.row["problem"], r.row["family"], r.row["n_params"], r.row["seed"], r.row["run_dir"]))


# --- numbers ------------------------------------------------------------------------------------

def frontier(n_params: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Mask of the best-error frontier: points whose error is below that of every point with fewer parameters."""
    n_params, err = np.asarray(n_params, float), np.asarray(err, float)
    mask = np.zeros(len(err), bool)
    best = math.inf
    for i in np.argsort(n_params, kind="stable"):
        if np.isfinite(err[i]) and err[i] > 0 and err[i] < best:
            mask[i], best = True, err[i]
    return mask


def power_law_slope(n_params: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """Least-squares fit of ``err = c · N^slope`` in log–log; returns ``(slope, c)`` (NaN with fewer than two distinct N)."""
    n_params, err = np.asarray(n_params, float), np.asarray(err, float)
    ok = np.isfinite(err) & (err > 0) & (n_params > 0)
    if len(np.unique(n_params[ok])) < 2:
        return math.nan, math.nan
    slope, log_c = np.polyfit(np.log(n_params[ok]), np.log(err[ok]), 1)
    return float(slope), float(np.exp(log_c))


def scaling_points(runs: Sequence[RunRecord]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (problem, series): parameter counts and each error's median, min and max over seeds.

    Each finished run gives one point per grid stage (just its final model when it has no stages).
    """
    raw: dict[tuple[str, str], dict[float, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.row["status"] != "ok":
            continue
        st = r.stages if r.stages and len(r.stages.get("n_params", [])) else {k: [r.row[k]] for k in ("n_params", *ERRORS)}
        for i, n in enumerate(st["n_params"]):
            raw[(r.row["problem"], r.series)][float(n)].append({e: float(st[e][i]) for e in ERRORS})
    out = {}
    for key, by_n in raw.items():
        ns = sorted(by_n)
        s: dict[str, np.ndarray] = {"n_params": np.array(ns), "n_seeds": np.array([len(by_n[n]) for n in ns])}
        for e in ERRORS:
            vals = [np.array([p[e] for p in by_n[n]]) for n in ns]
            s[f"{e}_median"] = np.array([np.median(v) for v in vals])
            s[f"{e}_min"] = np.array([v.min() for v in vals])
            s[f"{e}_max"] = np.array([v.max() for v in vals])
        out[key] = s
    return out


def fit_scaling(scaling: dict[tuple[str, str], dict[str, np.ndarray]]) -> dict[tuple[str, str], dict[str, float]]:
    """Slope (and prefactor) of each series' best-error frontier, for MSE and H1²."""
    fits = {}
    for key, s in scaling.items():
        f: dict[str, float] = {}
        for e in ("mse", "h1_sq"):
            m = frontier(s["n_params"], s[f"{e}_median"])
            f[f"slope_{e}"], f[f"c_{e}"] = power_law_slope(s["n_params"][m], s[f"{e}_median"][m])
            f[f"frontier_points_{e}"] = int(m.sum())
        fits[key] = f
    return fits


def settings_report(runs: Sequence[RunRecord]) -> tuple[dict[str, Any], dict[str, dict[Any, int]], bool | None]:
    """Settings held equal across the finished runs, those that differ (value -> count), and whether runs of
    the same seed trained on the same collocation points (None when no run recorded its points)."""
    done = [r for r in runs if r.settings]
    equal, differ = {}, {}
    for key in SETTINGS:
        values = [r.settings.get(key) for r in done]
        counts: dict[Any, int] = defaultdict(int)
        for v in values:
            counts[v if not isinstance(v, np.ndarray) else tuple(v.tolist())] += 1
        if len(counts) == 1:
            equal[key] = next(iter(counts))
        elif counts:
            differ[key] = dict(counts)
    by_seed: dict[int, set[str]] = defaultdict(set)
    for r in done:
        if r.points_hash:
            by_seed[r.row["seed"]].add(r.points_hash)
    same_points = all(len(h) == 1 for h in by_seed.values()) if by_seed else None
    return equal, differ, same_points


# --- writing ------------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.3g}" if abs(v) >= 1e-2 and abs(v) < 1e4 else f"{v:.2e}"
    return str(v)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def write_csv(path: Path, runs: Sequence[RunRecord]) -> Path:
    """``comparison.csv``: one row per run, columns :data:`COLUMNS`, full float precision."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            for r in runs:
                w.writerow([r.row[c] for c in COLUMNS])
    return path


def seed_summary(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Finished runs grouped by configuration (problem, family, width, final grid, k): median and min–max over seeds."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.row["status"] == "ok":
            groups[tuple(r.row[c] for c in ("problem", "family", "width", "grid", "k", "n_params"))].append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][5], kv[0][2])):
        d = dict(zip(("problem", "family", "width", "grid", "k", "n_params"), key), seeds=len(rs))
        for e in ("rel_l2", "mse", "h1_sq", "wall_time_s"):
            v = np.array([r.row[e] for r in rs], float)
            d[e] = (float(np.median(v)), float(v.min()), float(v.max()))
        out.append(d)
    return out


def write_markdown(path: Path, root: Path, cmp: Comparison) -> Path:
    """``comparison.md``: the run table, seed summary, scaling slopes, fairness of the settings, and problems."""
    runs = cmp.runs
    lines = [f"# Comparison of {len(runs)} run(s) in `{root}`", "",
             f"ok: {cmp.count('ok')}, failed: {cmp.count('failed')}, incomplete: {cmp.count('incomplete')}", ""]
    summary = seed_summary(runs)
    if summary:
        lines += ["## Finished configurations (median [min – max] over seeds)", ""]
        lines += _md_table(
            ("problem", "family", "width", "grid", "k", "params", "seeds", "rel L2", "MSE", "H1²", "wall time (s)"),
            ([d["problem"], d["family"], d["width"], d["grid"], d["k"], d["n_params"], d["seeds"],
              *(_fmt(d[e][0]) if d["seeds"] == 1 else f"{_fmt(d[e][0])} [{_fmt(d[e][1])} – {_fmt(d[e][2])}]"
                for e in ("rel_l2", "mse", "h1_sq", "wall_time_s"))]
             for d in summary))
        lines.append("")
    if cmp.fits:
        lines += ["## Scaling: power law fitted to each series' best-error frontier", "",
                  "Error ∝ N^slope over the points that improve on every smaller model of the series "
                  "(KAN grid stages included); the KAN paper's reference line is N⁻⁴.", ""]
        lines += _md_table(("problem", "series", "sizes", "frontier points (MSE)", "slope (MSE)", "slope (H1²)", "best MSE", "at params"),
                           ([p, s, len(cmp.scaling[(p, s)]["n_params"]), f["frontier_points_mse"], f["slope_mse"], f["slope_h1_sq"],
                             float(np.min(cmp.scaling[(p, s)]["mse_median"])),
                             int(cmp.scaling[(p, s)]["n_params"][np.argmin(cmp.scaling[(p, s)]["mse_median"])])]
                            for (p, s), f in sorted(cmp.fits.items())))
        lines.append("")
    equal, differ, same_points = settings_report(runs)
    lines += ["## Training settings", ""]
    if equal:
        lines.append("Held equal across all runs that wrote results: " + ", ".join(f"{k} = {v}" for k, v in equal.items()) + ".")
    for k, counts in differ.items():
        lines.append(f"- **{k} differs**: " + ", ".join(f"{v if v != '' else 'none'} ({n} runs)" for v, n in counts.items()))
    if same_points is True:
        lines.append("- Collocation points: identical for every run of the same seed (checked by hash).")
    elif same_points is False:
        lines.append("- **Collocation points differ between runs of the same seed** (different point counts, sampler or problem).")
    seeds = sorted({r.row["seed"] for r in runs if r.row["status"] == "ok"})
    lines += [f"- Seeds: {seeds}", ""]
    lines += ["## Runs", ""]
    lines += _md_table(COLUMNS, ([r.row[c] for c in COLUMNS] for r in runs))
    bad = [r for r in runs if r.row["status"] != "ok"]
    if bad:
        lines += ["", "## Runs not counted in the summaries", ""]
        lines += [f"- `{r.row['run_dir']}` ({r.row['status']}): {r.note or 'no message'}" for r in bad]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def write_summary_h5(path: Path, cmp: Comparison) -> Path:
    """``summary.h5``: ``runs/<column>`` (one entry per run, plus ``note``), ``scaling/<problem>/<series>/`` with
    the seed statistics per parameter count and the fitted slopes as attributes."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group("runs")
        for c in COLUMNS:
            values = [r.row[c] for r in cmp.runs]
            if all(isinstance(v, str) for v in values):
                g.create_dataset(c, data=np.array(values, dtype=h5py.string_dtype()))
            else:
                g.create_dataset(c, data=np.array(values, dtype=float if c not in ("grid", "k", "n_params", "seed") else np.int64))
        g.create_dataset("note", data=np.array([r.note for r in cmp.runs], dtype=h5py.string_dtype()))
        sc = f.create_group("scaling")
        for (problem, series), s in cmp.scaling.items():
            h = sc.require_group(problem).create_group(series.replace("/", "_"))
            for k, v in s.items():
                h.create_dataset(k, data=v)
            for k, v in cmp.fits[(problem, series)].items():
                h.attrs[k] = v
        equal, differ, same_points = settings_report(cmp.runs)
        for k, v in equal.items():
            f.attrs[f"equal_{k}"] = v
        f.attrs["differing_settings"] = ",".join(differ)
        if same_points is not None:
            f.attrs["same_points_per_seed"] = same_points
        for status in ("ok", "failed", "incomplete"):
            f.attrs[f"n_{status}"] = cmp.count(status)
    return path


def pick_dynamics(runs: Sequence[RunRecord], patterns: Sequence[str] | None = None) -> list[RunRecord]:
    """Runs whose history ``dynamics.png`` draws: those whose ``run_dir`` matches a glob pattern, or by default
    the lowest-error finished run of each (problem, series)."""
    with_history = [r for r in runs if r.history and len(r.history.get("step", []))]
    if patterns:
        return [r for r in with_history if any(fnmatch.fnmatch(r.row["run_dir"], p) for p in patterns)]
    best: dict[tuple[str, str], RunRecord] = {}
    for r in with_history:
        key = (r.row["problem"], r.series)
        if r.row["status"] == "ok" and (key not in best or r.row["rel_l2"] < best[key].row["rel_l2"]):
            best[key] = r
    return [best[k] for k in sorted(best)]


def dynamics_label(r: RunRecord) -> str:
    """Legend entry of a run in ``dynamics.png``: series, final grid (KANs), parameters, seed, directory."""
    grid = f" G={r.row['grid']}" if r.row["grid"] else ""
    return f"{r.series}{grid}, {r.row['n_params']} params, seed {r.row['seed']} ({r.row['run_dir']})"


def compare(sweep_dir: str | Path, out_dir: str | Path | None = None, dynamics: Sequence[str] | None = None) -> Comparison:
    """Compare every run below ``sweep_dir``; write the table, plots and ``summary.h5`` into ``out_dir`` (default: ``sweep_dir``).

    Args:
        sweep_dir: a Hydra multirun directory, or any directory with run directories below it.
        out_dir: where the comparison files go.
        dynamics: glob patterns on run directories (relative to ``sweep_dir``) whose training history
            ``dynamics.png`` draws; default: the best run of each series.
    """
    root = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else root
    runs = load_runs(root)
    scaling = scaling_points(runs)
    cmp = Comparison(runs, scaling, fit_scaling(scaling), {})
    cmp.files["csv"] = write_csv(out / "comparison.csv", runs)
    cmp.files["md"] = write_markdown(out / "comparison.md", root, cmp)
    cmp.files["h5"] = write_summary_h5(out / "summary.h5", cmp)
    if scaling:
        cmp.files["scaling"] = plot.plot_scaling(scaling, cmp.fits, out / "scaling.png")
    chosen = pick_dynamics(runs, dynamics)
    if chosen:
        cmp.files["dynamics"] = plot.plot_dynamics(
            [(dynamics_label(r), r.history) for r in chosen],
            out / "dynamics.png")
    return cmp


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kanpde.analysis.compare <sweep dir> [--out DIR] [--dynamics GLOB ...]``."""
    ap = argparse.ArgumentParser(prog="python -m kanpde.analysis.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path, help="directory with run directories (results.h5) below it")
    ap.add_argument("--out", type=Path, default=None, help="where to write the comparison (default: sweep_dir)")
    ap.add_argument("--dynamics", nargs="+", default=None, metavar="GLOB",
                    help="run directories (globs relative to sweep_dir) drawn in dynamics.png; default: best run per series")
    args = ap.parse_args(argv)
    try:
        cmp = compare(args.sweep_dir, args.out, args.dynamics)
    except FileNotFoundError as e:
        print(f"kanpde.analysis.compare: {e}", file=sys.stderr)
        return 2
    for r in cmp.runs:
        if r.row["status"] != "ok":
            print(f"kanpde.analysis.compare: {r.row['status']} run {r.row['run_dir']}: {r.note or 'no message'}", file=sys.stderr)
    print(f"kanpde.analysis.compare: {len(cmp.runs)} runs (ok {cmp.count('ok')}, failed {cmp.count('failed')}, "
          f"incomplete {cmp.count('incomplete')}) -> " + ", ".join(str(p) for p in cmp.files.values()))
    for (problem, series), f in sorted(cmp.fits.items()):
        print(f"  {problem} {series}: MSE slope {f['slope_mse']:.2f}, H1² slope {f['slope_h1_sq']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
