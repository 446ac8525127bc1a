"""scripts/reproduce_literature.py: its commands, its rows beside the published figures, its tables and exit codes."""
import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from kanpde.io import write_results
from conftest import load_script

ALL = ["poisson2d", "helmholtz2d", "diffusion1d", "burgers1d", "allen_cahn1d", "wave1d", "klein_gordon1d", "convection1d"]


@pytest.fixture(scope="module")
def lit():
    return load_script("reproduce_literature")


def _run(out: Path, problem: str, n_params: int, rel_l2: float, mse: float, status: str = "ok", message: str = "",
         width=(2, 10, 1), family: str = "kan") -> None:
    attrs = {"problem": problem, "model": f"KAN{list(width)}", "family": family, "width": list(width), "n_params": n_params,
             "rel_l2": rel_l2, "mse": mse, "steps": 1000, "wall_time_s": 12.5, "status": status, "message": message,
             "device": "cpu", "threads": 1}
    write_results(out / "runs" / problem / "results.h5", attrs, history={"step": [0]}, evaluation={"x": np.zeros((1, 2))})


def test_literature_covers_every_problem_with_its_metric_and_quick_budget(lit):
    assert list(lit.LITERATURE) == ALL and set(lit.QUICK) == set(ALL) and list(lit.PROBLEMS) == ALL
    assert {p: cls.name for p, cls in lit.PROBLEMS.items()} == {p: p for p in ALL}
    assert {p: e["metric"] for p, e in lit.LITERATURE.items()} == {p: "mse" if p == "poisson2d" else "rel_l2" for p in ALL}
    assert lit.LITERATURE["diffusion1d"]["pinn"] is None and lit.LITERATURE["poisson2d"]["pikan"].params == 300
    assert (lit.LITERATURE["helmholtz2d"]["pikan"].value, lit.LITERATURE["helmholtz2d"]["pikan"].params) == (1.02e-3, 1777)
    assert [lit.LITERATURE[p]["target"].value for p in ALL] == [1e-8, 5e-4, 1e-4, 1e-5, 1e-4, 1e-4, 1e-4, 1e-4]


def test_every_compared_figure_is_an_entry_of_the_problems_published(lit):
    """The script keeps no figures of its own: each best PIKAN / PINN is the lowest entry of its family in the
    problem class's ``published`` (as imported from kanpde.problems), so the two cannot drift apart."""
    import importlib

    for p in ALL:
        cls = lit.PROBLEMS[p]
        assert cls is getattr(importlib.import_module(cls.__module__), cls.__name__)
        assert cls.__module__.startswith("kanpde.problems.")
        metric = lit.LITERATURE[p]["metric"]
        for key, family in (("pikan", "kan"), ("pinn", "mlp")):
            entries = [e for e in cls.published if e.get("family") == family and e["metric"] == metric]
            ref = lit.LITERATURE[p][key]
            if not entries:
                assert ref is None, (p, key)
                continue
            best = min(entries, key=lambda e: e["value"])
            assert (ref.value, ref.params, ref.method, ref.source) == \
                (best["value"], best.get("params"), best["method"], best["source"]), (p, key)
    assert all(e.get("family") in ("kan", "mlp") for p in ALL for e in lit.PROBLEMS[p].published)


def test_best_published_picks_the_lowest_entry_of_the_family_and_metric(lit):
    class Fake:
        published = ({"method": "A", "metric": "rel_l2", "value": 3e-3, "params": 10, "source": "s1", "family": "kan"},
                     {"method": "B", "metric": "rel_l2", "value": 1e-3, "source": "s2", "family": "kan"},
                     {"method": "C", "metric": "mse", "value": 1e-9, "source": "s3", "family": "kan"},
                     {"method": "D", "metric": "rel_l2", "value": 1e-4, "source": "s4", "family": "mlp"})
    assert lit.best_published(Fake, "kan", "rel_l2") == lit.Published(1e-3, None, "B", "s2")
    assert lit.best_published(Fake, "mlp", "rel_l2") == lit.Published(1e-4, None, "D", "s4")
    assert lit.best_published(Fake, "mlp", "mse") is None


def test_commands_carry_the_preset_run_dir_threads_and_quick_overrides(lit, monkeypatch):
    monkeypatch.setattr(lit, "QUICK", {"burgers1d": ["trainer.steps=7"], "poisson2d": ["trainer.steps=3", "seed=1"]})
    base = lambda p: [sys.executable, "-m", "kanpde", f"+experiment={p}_best", f"hydra.run.dir=/o/runs/{p}", "trainer.progress=false",
                      "trainer.resume=never"]
    assert lit.commands(["poisson2d", "burgers1d"], "/o", quick=False, jobs=1) == {"poisson2d": base("poisson2d"), "burgers1d": base("burgers1d")}
    assert lit.commands(["burgers1d"], "/o", quick=False, jobs=3) == {"burgers1d": base("burgers1d") + ["threads=1"]}
    assert lit.commands(["poisson2d"], "/o", quick=True, jobs=1) == {"poisson2d": base("poisson2d") + ["trainer.steps=3", "seed=1"]}
    assert lit.commands(["burgers1d"], "/o", quick=True, jobs=2) == {"burgers1d": base("burgers1d") + ["threads=1", "trainer.steps=7"]}


def test_rows_compare_with_the_published_figures_and_report_failed_and_missing_runs(lit, tmp_path):
    _run(tmp_path, "poisson2d", 300, rel_l2=1e-3, mse=5e-9)                 # meets MSE <= 1e-8 with KAN [2,10,1]
    _run(tmp_path, "helmholtz2d", 1500, rel_l2=4e-4, mse=1e-9)              # meets 5e-4 with <= 2,000 params
    _run(tmp_path, "burgers1d", 6000, rel_l2=8e-6, mse=1e-12)               # error meets 1e-5, but 6,000 > 5,000 params
    _run(tmp_path, "allen_cahn1d", 20000, rel_l2=math.nan, mse=math.nan, status="failed", message="loss is NaN at step 10")
    by = {r["problem"]: r for r in lit.rows(ALL, tmp_path)}
    assert list(by) == ALL and all(list(r) == lit.COLUMNS for r in by.values())

    p = by["poisson2d"]
    assert (p["metric"], p["ours"], p["params"], p["steps"], p["status"], p["target_met"]) == ("mse", 5e-9, 300, 1000, "ok", "yes")
    assert p["ratio_pikan"] == pytest.approx(5e-9 / 1e-7) and p["ratio_pinn"] == pytest.approx(5e-9 / 1e-5)
    assert (p["pikan_params"], p["pinn_params"], p["target_params"]) == (300, 20601, "KAN [2,10,1]")
    h = by["helmholtz2d"]
    assert (h["metric"], h["ours"], h["target_met"]) == ("rel_l2", 4e-4, "yes")
    assert h["ratio_pikan"] == pytest.approx(4e-4 / 1.02e-3) and h["ratio_pinn"] == pytest.approx(4e-4 / 3.54e-3)
    assert h["pinn_params"] == "" and "Shukla et al. 2024" in h["pinn_source"] and "Rigas et al. 2024" in h["pikan_source"]
    b = by["burgers1d"]
    assert b["ratio_pikan"] == pytest.approx(8e-6 / 2.43e-2) and b["ratio_pinn"] == pytest.approx(8e-6 / 8.25e-9)
    assert (b["status"], b["target_met"]) == ("ok", "no")

    a = by["allen_cahn1d"]
    assert a["status"] == "failed: loss is NaN at step 10" and a["target_met"] == "no"
    assert all(math.isnan(a[k]) for k in ("ours", "params", "ratio_pikan", "ratio_pinn"))
    assert a["pikan"] == 2.51e-5 and a["pinn"] == 1.88e-6 and a["pikan_params"] == "118k"
    d = by["diffusion1d"]
    assert (d["pikan_params"], d["target_params"]) == ("~1.7k", 2000)
    assert d["status"].startswith("missing") and "runs/diffusion1d.log" in d["status"] and d["target_met"] == "no"
    assert math.isnan(d["ours"]) and math.isnan(d["pinn"]) and d["pinn_source"] == "" and d["pikan"] == 2.1e-4


def test_model_mlp_runs_the_same_presets_with_an_mlp_into_their_own_directories(lit, tmp_path):
    cmd = lit.commands(["burgers1d"], "/o", quick=False, jobs=1, model="mlp")["burgers1d"]
    assert cmd[3:9] == ["+experiment=burgers1d_best", "hydra.run.dir=/o/runs/burgers1d_mlp", "trainer.progress=false",
                        "trainer.resume=never", "model=mlp", "model.width=[2,30,30,30,1]"]
    _run(tmp_path, "burgers1d_mlp", 1981, rel_l2=5e-4, mse=1e-7, width=(2, 30, 30, 30, 1), family="mlp")
    row = lit.rows(["burgers1d"], tmp_path, model="mlp")[0]
    assert (row["problem"], row["ours"], row["params"]) == ("burgers1d", 5e-4, 1981)


def test_target_of_poisson2d_needs_the_kan_2_10_1(lit, tmp_path):
    _run(tmp_path, "poisson2d", 400, rel_l2=1e-4, mse=1e-9, width=(2, 20, 1))
    assert lit.rows(["poisson2d"], tmp_path)[0]["target_met"] == "no"
    _run(tmp_path, "poisson2d", 400, rel_l2=1e-4, mse=1e-9, width=(2, 10, 1), family="mlp")
    assert lit.rows(["poisson2d"], tmp_path)[0]["target_met"] == "no"


def test_tables_are_written_with_the_columns_and_formats(lit, tmp_path):
    _run(tmp_path, "helmholtz2d", 1500, rel_l2=4.1234e-4, mse=1e-9)
    table = lit.rows(["helmholtz2d", "diffusion1d"], tmp_path)
    csv_path, md_path = lit.write_tables(table, tmp_path, ["Command: `x`", "Mode: quick"])
    with csv_path.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == lit.COLUMNS
        written = list(reader)
    assert [r["problem"] for r in written] == ["helmholtz2d", "diffusion1d"]
    assert float(written[0]["ours"]) == 4.1234e-4 and written[0]["target_met"] == "yes" and written[1]["ours"] == "nan"
    assert (written[0]["pikan_params"], written[0]["pinn_params"], written[0]["target_params"]) == ("1777", "", "2000")
    md = md_path.read_text().splitlines()
    assert md[:3] == ["Command: `x`", "Mode: quick", ""]
    assert md[3].count("|") == len(lit.COLUMNS) + 1 and md[4] == "|" + "---|" * len(lit.COLUMNS)
    cells = [c.strip() for c in md[5].strip("|").split("|")]
    assert cells[:9] == ["helmholtz2d", "KAN[2, 10, 1]", "1,500", "1,000", "12", "cpu", "1", "rel_l2", "4.12e-04"]
    assert cells[9:11] == ["1.02e-03", "1,777"] and cells[12] == "0.4" and cells[13] == "3.54e-03" and cells[14] == "—" and cells[16] == "0.12" and cells[18] == "2,000"
    assert md[6].startswith("| diffusion1d | — |") and "missing" in md[6]
    assert not list(tmp_path.glob(".*.tmp"))


def test_dry_run_prints_the_commands_and_unknown_problems_exit_2(lit, tmp_path, capsys):
    assert lit.main(["--dry-run", "--quick", "--jobs", "2", "--out", str(tmp_path / "o"), "--problems", "burgers1d", "poisson2d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "+experiment=burgers1d_best" in lines[0] and "+experiment=poisson2d_best" in lines[1]
    assert f"hydra.run.dir={tmp_path / 'o'}/runs/burgers1d" in lines[0] and "threads=1" in lines[0]
    assert not (tmp_path / "o").exists()
    assert lit.main(["--dry-run", "--problems", "poisson2d", "heat3d"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "heat3d" in err and all(p in err for p in ALL)


def test_main_runs_the_commands_and_exits_1_when_a_run_fails(lit, tmp_path, monkeypatch, capsys):
    def fake(problem, cmd, log):  # stands in for the subprocess: poisson2d writes results, burgers1d writes none
        log.write_text("fake\n")
        if problem == "poisson2d":
            _run(tmp_path, "poisson2d", 300, rel_l2=1e-3, mse=5e-9)
            return 0
        return 1
    monkeypatch.setattr(lit, "run_one", fake)
    monkeypatch.setattr(lit, "hardware", lambda: "test cpu, 2 cores")
    _run(tmp_path, "burgers1d", 3000, rel_l2=1e-3, mse=1e-7)  # stale results from an earlier run: removed before running
    assert lit.main(["--out", str(tmp_path), "--jobs", "2", "--problems", "poisson2d", "burgers1d"]) == 1
    out = capsys.readouterr().out
    md = (tmp_path / "literature.md").read_text()
    assert md in out and "Mode: full" in md and "test cpu, 2 cores" in md
    assert "scripts/reproduce_literature.py --out" in md.splitlines()[0]
    written = list(csv.DictReader((tmp_path / "literature.csv").open()))
    assert [(r["problem"], r["status"][:7]) for r in written] == [("poisson2d", "ok"), ("burgers1d", "missing")]


@pytest.mark.parametrize("problem", ALL)
def test_each_best_preset_builds_within_its_comparisons_size(lit, problem):
    """Every preset composes (with and without the quick budget) into a valid trainer and problem, and its
    KAN at the final grid is no larger than the target allows (or is the target's width)."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir
    from kanpde.experiment.run import build, resolve_embedding, resolve_width

    for quick in (False, True):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=[f"+experiment={problem}_best", *(lit.QUICK[problem] if quick else [])])
        plain = OmegaConf.to_container(cfg, resolve=True)
        assert plain["problem"]["_target_"].endswith(type(build("problem", plain["problem"])).__name__)
        trainer = build("trainer", plain["trainer"])
        grids = trainer.config.grid_extension.grids
        model = dict(plain["model"], grid=grids[-1] if grids else plain["model"]["grid"])
        problem_obj = build("problem", plain["problem"])
        net = build("model", model | {"width": resolve_width(problem_obj, model["width"]),
                                      "embedding": resolve_embedding(problem_obj, model.get("embedding"))})
        target = lit.LITERATURE[problem]["target"]
        if target.width is not None:
            assert net.width == list(target.width)
        elif target.params is not None:
            assert net.n_params() <= target.params


@pytest.mark.parametrize("problem", ALL)
def test_each_best_preset_also_composes_with_the_mlp_of_model_mlp(lit, problem):
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir
    from kanpde.experiment.run import build, resolve_embedding, resolve_width

    extra = lit.commands([problem], "/o", quick=True, jobs=1, model="mlp")[problem][7:]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={problem}_best", *extra])
    plain = OmegaConf.to_container(cfg, resolve=True)
    problem_obj = build("problem", plain["problem"])
    model = dict(plain["model"])
    net = build("model", model | {"width": resolve_width(problem_obj, model["width"]),
                                  "embedding": resolve_embedding(problem_obj, model.get("embedding"))})
    assert type(net).__name__ == "MLP" and net.width == lit.MLP_WIDTH[problem]
    build("trainer", plain["trainer"]).check_model(net)  # e.g. a KAN's grid-extension schedule would be refused


@pytest.mark.slow
def test_collect_builds_the_tables_from_a_sweep_of_the_presets(lit, tmp_path):
    """The cluster route: a Hydra multirun of the presets laid out as runs/<problem>, then --collect."""
    import subprocess

    overrides = ["trainer.steps=3", "trainer.grid_extension.at=[]", "trainer.grid_extension.grids=[]", "plots=false",
                 "trainer.progress=false", "problem.n_interior=50", "problem.n_boundary=20",
                 f"hydra.sweep.dir={tmp_path / 'runs'}", "hydra.sweep.subdir=${hydra:runtime.choices.problem}"]
    done = subprocess.run([sys.executable, "-m", "kanpde", "-m", "+experiment=diffusion1d_best,helmholtz2d_best", *overrides],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert lit.main(["--collect", "--out", str(tmp_path), "--problems", "diffusion1d", "helmholtz2d"]) == 0
    with open(tmp_path / "literature.csv") as fh:
        table = {r["problem"]: r for r in csv.DictReader(fh)}
    assert set(table) == {"diffusion1d", "helmholtz2d"} and all(r["status"] == "ok" for r in table.values())
    assert table["helmholtz2d"]["model"] == "KAN[2, 16, 1]" and "collected" in (tmp_path / "literature.md").read_text()
