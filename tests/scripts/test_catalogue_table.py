"""scripts/catalogue_table.py builds the README's catalogue table from a sweep's results files."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from kanpde.io import write_results

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import catalogue_table  # noqa: E402


def _run(d: Path, problem: str, family: str, n_params: int, rel_l2: float, wall: float, status: str = "ok", **extra) -> None:
    attrs = {"problem": problem, "family": family, "width": [2, 10, 1], "n_params": n_params, "rel_l2": rel_l2,
             "mse": rel_l2**2, "h1_sq": np.nan, "wall_time_s": wall, "steps": 100, "seed": 0, "status": status, **extra}
    write_results(d / "results.h5", attrs, {"step": [0]}, {"x": np.zeros((1, 2))})


def test_table_pairs_kan_and_mlp_per_problem(tmp_path):
    _run(tmp_path / "0", "helmholtz2d", "kan", 750, 2.5e-3, 150.4)
    _run(tmp_path / "1", "helmholtz2d", "mlp", 921, 4.0e-2, 301.0)
    _run(tmp_path / "2", "kovasznay", "kan", 1250, 1e-4, 99.0, rel_l2_u=1e-5, rel_l2_p=3e-4, outputs="u,v,p")
    _run(tmp_path / "3", "kovasznay", "mlp", 961, float("nan"), 10.0, status="failed")
    _run(tmp_path / "4", "inverse_heat1d", "kan", 750, 1e-3, 60.0, unknown_kappa=0.1001, unknown_kappa_rel_err=1e-3)
    lines = catalogue_table.table(tmp_path).splitlines()
    assert len(lines) == 2 + 3
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert rows["helmholtz2d"].startswith("| `helmholtz2d` | 750 | 2.5e-03 | 150 s | 921 | 4.0e-02 | 301 s | adaptive B-spline PIKAN 1.02e-03")
    assert "1.0e-04 (u 1.0e-05, p 3.0e-04)" in rows["kovasznay"] and "| — | failed | — |" in rows["kovasznay"]
    assert "kappa rel. err. 1.0e-03" in rows["inverse_heat1d"] and "not run" in rows["inverse_heat1d"]


def test_presets_column_reads_reproduce_literature_runs(tmp_path):
    sweep, lit = tmp_path / "sweep", tmp_path / "lit"
    _run(sweep / "0", "helmholtz2d", "kan", 750, 2.5e-3, 150.4)
    _run(sweep / "1", "burgers1d", "kan", 750, 2.7e-1, 80.0)
    _run(sweep / "2", "diffusion1d", "kan", 750, 3.6e-3, 90.0)
    _run(lit / "runs" / "helmholtz2d", "helmholtz2d", "kan", 1200, 2.0e-3, 400.0)
    _run(lit / "runs" / "helmholtz2d_mlp", "helmholtz2d", "mlp", 1981, 7.0e-4, 500.0)
    _run(lit / "runs" / "burgers1d_mlp", "burgers1d", "mlp", 1981, 5.7e-4, 500.0, status="diverged")
    lines = catalogue_table.table(sweep, lit).splitlines()
    assert "| best preset: KAN / MLP | published" in lines[0] and lines[1].count("---") == 9
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in lines[2:]}
    assert rows["helmholtz2d"][7] == "2.0e-03 / 7.0e-04"
    assert rows["burgers1d"][7] == "— / diverged"
    assert rows["diffusion1d"][7] == "—"
    assert "best preset" not in catalogue_table.table(sweep).splitlines()[0]
