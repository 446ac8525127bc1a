"""kanpde.analysis.compare on synthetic results files with known numbers: table, seed statistics, slope fits,
fairness report, and runs that failed, never finished or left a corrupt file."""
from __future__ import annotations

import csv
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
from omegaconf import OmegaConf

from kanpde.analysis.compare import COLUMNS, compare, frontier, power_law_slope, series_label
from kanpde.io import write_results

SEED_FACTOR = {0: 1.0, 1: 2.0, 2: 0.5}  # multiplicative per-seed spread: the median is the seed-0 value


def fake_run(path, *, family="kan", width=(2, 5, 1), grids=(5, 10, 20), seed=0, c=1e2, slope=-4.0,
             status="ok", message="", steps=300, wall=30.0, points_hash="p", n_interior=1000, optimizer="lbfgs"):
    """A results.h5 whose grid stages follow err = c · N^slope (times the seed's factor)."""
    edges = sum(a * b for a, b in zip(width[:-1], width[1:]))
    ns = [edges * (g + 3 + 2) for g in grids] if family == "kan" else [edges + sum(width[1:])]
    f = SEED_FACTOR[seed]
    mse = [f * c * n**slope for n in ns]
    h1 = [10 * m for m in mse]
    rel = [math.sqrt(m) for m in mse]
    per_stage = steps // len(ns)
    attrs = {"problem": "poisson2d", "family": family, "model": f"{family.upper()}{list(width)}", "width": list(width),
             "grid": grids[-1] if family == "kan" else 0, "k": 3 if family == "kan" else 0, "n_params": ns[-1],
             "rel_l2": rel[-1], "mse": mse[-1], "h1_sq": h1[-1], "wall_time_s": wall, "steps": steps, "seed": seed,
             "status": status, "message": message, "optimizer": optimizer, "n_interior": n_interior, "n_boundary": 100,
             "dtype": "float64", "device": "cpu", "points_hash": f"{points_hash}{seed}", "adam_steps": 0, "lr": 1e-3,
             "grid_schedule": "", "threads": 1}
    history = {"step": np.arange(0, steps, 10), "time_s": np.linspace(0, wall, steps // 10),
               "rel_l2": np.repeat(rel, steps // 10 // len(ns) + 1)[: steps // 10], "loss": np.ones(steps // 10)}
    stages = {"step": [per_stage * (i + 1) for i in range(len(ns))], "grid": list(grids) if family == "kan" else [0],
              "n_params": ns, "rel_l2": rel, "mse": mse, "h1_sq": h1, "time_s": [1.0] * len(ns)}
    write_results(path / "results.h5", attrs, history, {"x": np.zeros((4, 2))}, stages)
    return ns, mse


@pytest.fixture
def sweep(tmp_path):
    """3 seeds of KAN [2,5,1] (N^-4 over its grid stages), 3 seeds of two MLP depth-3 widths (N^-1),
    one failed KAN, one job without results (incomplete) and one corrupt results.h5."""
    root = tmp_path / "sweep"
    expected = {}
    for seed in (0, 1, 2):
        expected["kan"] = fake_run(root / f"kan_{seed}", seed=seed)
        for i, w in enumerate((10, 40)):
            fake_run(root / f"mlp_{i}_{seed}", family="mlp", width=(2, w, w, 1), seed=seed, c=1.0, slope=-1.0)
    fake_run(root / "kan_failed", width=(2, 7, 1), status="failed", message="non-finite loss at step 7")
    hydra_dir = root / "kan_killed" / ".hydra"
    hydra_dir.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"model": {"_target_": "kanpde.models.KAN", "width": [2, 10, 1], "grid": 3, "k": 3},
                                     "problem": {"_target_": "kanpde.problems.poisson.Poisson2D"}, "seed": 4}), hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": {"problem": "poisson2d", "model": "kan"}}}}), hydra_dir / "hydra.yaml")
    (root / "kan_corrupt").mkdir()
    (root / "kan_corrupt" / "results.h5").write_bytes(b"\x89HDF\r\n\x1a\nthis is not a whole file")
    return root, expected


def read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


@pytest.mark.slow
def test_table_has_one_row_per_run_with_status(sweep):
    root, _ = sweep
    cmp = compare(root)
    header, rows = read_csv(root / "comparison.csv")
    assert tuple(header) == COLUMNS
    assert len(rows) == 3 + 6 + 3
    by_dir = {r["run_dir"]: r for r in rows}
    assert by_dir["kan_failed"]["status"] == "failed"
    assert by_dir["kan_killed"]["status"] == "incomplete" and by_dir["kan_corrupt"]["status"] == "incomplete"
    assert sum(r["status"] == "ok" for r in rows) == 9
    # a run that never wrote results still says what it was meant to be, from its .hydra config
    killed = by_dir["kan_killed"]
    assert (killed["problem"], killed["family"], killed["width"], killed["grid"], killed["seed"]) == ("poisson2d", "kan", "[2,10,1]", "3", "4")
    assert killed["rel_l2"] == "nan"
    ok = by_dir["kan_0"]
    assert ok["width"] == "[2,5,1]" and int(ok["n_params"]) == 15 * 25 and float(ok["ms_per_step"]) == pytest.approx(100.0)
    assert cmp.count("ok") == 9 and cmp.count("failed") == 1 and cmp.count("incomplete") == 2


def test_report_names_failed_incomplete_and_corrupt_runs(sweep):
    root, _ = sweep
    compare(root)
    md = (root / "comparison.md").read_text()
    assert "ok: 9, failed: 1, incomplete: 2" in md
    assert "`kan_failed` (failed): non-finite loss at step 7" in md
    assert "`kan_killed` (incomplete): no results.h5" in md
    assert "`kan_corrupt` (incomplete): results.h5 unreadable" in md


def test_seed_median_and_range(sweep):
    root, expected = sweep
    cmp = compare(root)
    ns, mse = expected["kan"]  # seed 2's run, factor 0.5
    s = cmp.scaling[("poisson2d", "KAN [2,5,1]")]
    np.testing.assert_array_equal(s["n_params"], ns)
    base = np.array(mse) / SEED_FACTOR[2]
    np.testing.assert_allclose(s["mse_median"], base, rtol=1e-12)
    np.testing.assert_allclose(s["mse_min"], 0.5 * base, rtol=1e-12)
    np.testing.assert_allclose(s["mse_max"], 2.0 * base, rtol=1e-12)
    assert list(s["n_seeds"]) == [3, 3, 3]
    md = (root / "comparison.md").read_text()
    assert f"{base[-1]:.2e} [{0.5 * base[-1]:.2e} – {2 * base[-1]:.2e}]" in md


def test_fitted_slopes_recover_the_power_laws(sweep):
    root, _ = sweep
    cmp = compare(root)
    assert cmp.fits[("poisson2d", "KAN [2,5,1]")]["slope_mse"] == pytest.approx(-4.0, abs=1e-9)
    assert cmp.fits[("poisson2d", "KAN [2,5,1]")]["slope_h1_sq"] == pytest.approx(-4.0, abs=1e-9)
    assert cmp.fits[("poisson2d", "MLP depth 3")]["slope_mse"] == pytest.approx(-1.0, abs=1e-9)
    with h5py.File(root / "summary.h5") as f:
        assert f["scaling/poisson2d/KAN [2,5,1]"].attrs["slope_mse"] == pytest.approx(-4.0, abs=1e-9)
        status = [s.decode() for s in f["runs/status"][()]]
        assert status.count("ok") == 9 and f.attrs["n_incomplete"] == 2
        assert f["runs/n_params"].shape == (12,)


def test_plots_are_written(sweep):
    root, _ = sweep
    cmp = compare(root, out_dir=root / "report", dynamics=["kan_*"])
    for name in ("scaling.png", "dynamics.png", "comparison.csv", "comparison.md", "summary.h5"):
        p = root / "report" / name
        assert p.is_file() and p.stat().st_size > 1000, name
    assert not list((root / "report").glob("*.tmp"))
    assert set(cmp.files) == {"csv", "md", "h5", "scaling", "dynamics"}


@pytest.mark.slow
def test_fairness_report_states_what_was_equal_and_what_differed(sweep, tmp_path):
    root, _ = sweep
    compare(root)
    md = (root / "comparison.md").read_text()
    assert "Held equal across all runs that wrote results: optimizer = lbfgs" in md and "n_interior = 1000" in md
    assert "identical for every run of the same seed" in md
    fake_run(root / "mlp_other_points", family="mlp", width=(2, 8, 1), seed=0, points_hash="q", n_interior=500, optimizer="adam")
    compare(root)
    md = (root / "comparison.md").read_text()
    assert "**n_interior differs**: 1000 (10 runs), 500 (1 runs)" in md
    assert "**optimizer differs**" in md
    assert "Collocation points differ between runs of the same seed" in md


def test_frontier_keeps_only_improvements():
    n = np.array([10, 20, 40, 80, 160])
    err = np.array([1.0, 0.5, 0.7, 0.1, 0.1])  # 40 is worse than 20; 160 is no better than 80
    assert frontier(n, err).tolist() == [True, True, False, True, False]
    assert frontier(n[::-1], err[::-1]).tolist() == [False, True, False, True, True]  # order of input is irrelevant
    assert frontier(n, np.array([np.nan, 1.0, 0.0, 0.5, 0.2])).tolist() == [False, True, False, True, True]


@pytest.mark.parametrize("slope", [-4.0, -2.5, -1.0, 0.5])
def test_power_law_slope_on_exact_power_laws(slope):
    n = np.geomspace(50, 5e4, 7)
    s, c = power_law_slope(n, 3e-2 * n**slope)
    assert s == pytest.approx(slope, abs=1e-10) and c == pytest.approx(3e-2, rel=1e-8)


def test_power_law_slope_with_noise_and_degenerate_inputs():
    rng = np.random.default_rng(0)
    n = np.geomspace(100, 1e5, 30)
    s, _ = power_law_slope(n, n**-2.0 * np.exp(rng.normal(0, 0.1, n.size)))
    assert s == pytest.approx(-2.0, abs=0.1)
    assert math.isnan(power_law_slope([100], [1e-3])[0])
    assert math.isnan(power_law_slope([100, 100], [1e-3, 2e-3])[0])  # one distinct size: no slope
    assert math.isnan(power_law_slope([100, 200], [1e-3, np.nan])[0])


def test_series_labels():
    assert series_label("kan", "[2,10,1]") == "KAN [2,10,1]"
    assert series_label("mlp", "[2,100,100,100,1]") == "MLP depth 4"
    assert series_label("mlp", "[2,20,1]") == "MLP depth 2"


@pytest.mark.slow
def test_cli_reports_missing_or_empty_directory(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kanpde.analysis.compare", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no sweep directory" in proc.stderr and "nope" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "kanpde.analysis.compare", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no runs under" in proc.stderr
    assert not (tmp_path / "comparison.csv").exists()


@pytest.mark.slow
def test_cli_summarises_and_warns_about_bad_runs(sweep):
    root, _ = sweep
    proc = subprocess.run([sys.executable, "-m", "kanpde.analysis.compare", str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "12 runs (ok 9, failed 1, incomplete 2)" in proc.stdout
    assert "KAN [2,5,1]: MSE slope -4.00" in proc.stdout
    assert "incomplete run kan_corrupt: results.h5 unreadable" in proc.stderr


def test_grid_extensions_read_from_history():
    from kanpde.analysis.figures import grid_extensions
    h = {"step": np.array([0, 10, 20, 30, 40]), "grid": np.array([5.0, 5.0, 10.0, 10.0, 20.0])}
    assert grid_extensions(h) == {20: 10, 40: 20}
    assert grid_extensions({"step": np.array([0, 10]), "grid": np.array([0.0, 0.0])}) == {}  # an MLP
    assert grid_extensions({"step": np.array([0])}) == {}
