"""scripts/knots_study.py: every variant ends with the uniform run's parameter count, and a small study runs."""
from __future__ import annotations

import csv

import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("knots_study")


def _value(args, key):
    return next(a.split("=", 1)[1] for a in args if a.startswith(key + "="))


def test_every_variant_trains_the_same_recipe_to_the_same_parameter_count(study):
    width, grid, steps, every = [2, 10, 1], 20, 2000, 250
    runs = {v: study.overrides("burgers1d", v, width, grid, steps, every) for v in study.VARIANTS}
    shared = ("problem", "model.width", "trainer.optimizer", "trainer.adam_steps", "trainer.steps", "seed", "trainer.grid_extension.at")
    for key in shared:
        assert len({_value(args, key) for args in runs.values()}) == 1, key
    assert _value(runs["uniform"], "model.grid") == "20" and _value(runs["uniform"], "seed") == "0"
    assert _value(study.overrides("burgers1d", "uniform", width, grid, steps, every, seed=3), "seed") == "3"
    assert _value(runs["uniform"], "trainer.optimizer") == "adam_lbfgs"
    assert _value(study.overrides("burgers1d", "move/curvature", width, grid, steps, every, optimizer="ssbroyden"),
                  "trainer.optimizer") == "adam_ssbroyden"
    insert = runs["insert/residual"]
    # seven changes (at 250 .. 1750) of one knot per input: 13 -> 20, stopped by the uniform run's parameter count
    assert _value(insert, "model.grid") == "13" and _value(insert, "trainer.knots.insert") == "1"
    assert int(_value(insert, "trainer.knots.budget")) == study.n_params(width, grid) == 30 * 25
    for v in ("move/curvature", "density/input"):
        assert _value(runs[v], "model.grid") == "20" and _value(runs[v], "trainer.knots.follow") == "false"
        assert _value(runs[v], "trainer.knots.indicator") == v.split("/")[1]
    jump = runs["move-jump/residual"]
    assert _value(jump, "trainer.knots.method") == "move" and _value(jump, "trainer.knots.removal") == "jump"
    assert not any(a.startswith("trainer.knots.removal=") for a in runs["move/residual"])


def test_preset_mode_trains_each_problems_best_preset_at_the_studys_grid(study):
    """--preset: the problem's _best preset (width, optimiser, techniques) composes with the study's grid, no grid
    extension, the knot settings and the extra overrides, which go last."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir

    args = study.overrides("allen_cahn1d", "move/residual", [2, 10, 1], 5, None, 500, preset=True, keep_curvature=True,
                           until=3000, extra=("model.width=[2,8,8,1]",))
    assert args[0] == "+experiment=allen_cahn1d_best" and args[-1] == "model.width=[2,8,8,1]"
    assert not any(a.startswith(("trainer.optimizer=", "trainer.steps=", "trainer.adam_steps=")) for a in args)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=args)
    assert cfg.model.grid == 5 and list(cfg.model.width) == [2, 8, 8, 1] and cfg.trainer.optimizer == "ssbroyden"
    assert cfg.problem.exact_periodic and list(cfg.trainer.grid_extension.at) == []
    assert cfg.trainer.knots.keep_curvature and cfg.trainer.knots.until == 3000 and cfg.trainer.knots.every == 500
    density = study.overrides("allen_cahn1d", "density/input", [2, 10, 1], 5, None, 500, preset=True, relax=0.25)
    assert "trainer.knots.relax=0.25" in density and not any("relax" in a for a in args)  # only density moves relax
    uniform = study.overrides("allen_cahn1d", "uniform", [2, 10, 1], 5, 800, 500, preset=True)
    assert "trainer.steps=800" in uniform
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        knots = compose("config", overrides=uniform).trainer.knots  # the preset inserts knots; the uniform variant not
        plain = compose("config", overrides=study.overrides("allen_cahn1d", "density/input", [2, 10, 1], 5, None, 500, preset=True)).trainer.knots
    assert knots.method == "none" and not knots.keep_curvature and knots.until is None
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):  # burgers1d_best trains Chebyshev edges
        assert compose("config", overrides=study.overrides("burgers1d", "density/curvature", [2, 10, 1], 5, None, 500,
                                                           preset=True)).model.basis == "bspline"
    assert plain.method == "density" and not plain.keep_curvature and plain.until is None
    with pytest.raises(ValueError, match="insert/residual needs the run's step count and width"):
        study.overrides("allen_cahn1d", "insert/residual", [2, 10, 1], 5, None, 500, preset=True)


@pytest.mark.slow
def test_a_small_study_writes_its_table(study, tmp_path, capsys):
    args = ["--problems", "poisson2d", "--variants", "uniform", "insert/residual", "--steps", "16",
            "--every", "4", "--grid", "6", "--jobs", "2", "--out", str(tmp_path)]
    assert study.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "knots_study.csv")))
    assert [r["variant"] for r in rows] == ["uniform", "insert/residual"]
    assert len({r["n_params"] for r in rows}) == 1 and {r["grid"] for r in rows} == {"6"}  # insert: 3 -> 6, stopped by the budget
    assert all(0 < float(r["rel_l2"]) < 10 for r in rows)
    assert "| poisson2d | insert/residual |" in capsys.readouterr().out
    assert study.main(args) == 0  # done runs are not run again
    assert "exit" not in capsys.readouterr().out
