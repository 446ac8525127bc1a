"""scripts/ablation.py: the variants each preset gets, that each composes and changes what it says, and the table."""
import csv
import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from kanpde.io import write_results
from conftest import load_script


@pytest.fixture(scope="module")
def abl():
    return load_script("ablation")


EXPECTED = {
    "burgers1d": ["preset", "bspline-edges", "no-quasi-newton", "no-rad", "no-keep-curvature"],
    "allen_cahn1d": ["preset", "uniform-knots", "no-quasi-newton", "no-rad", "no-keep-curvature", "no-exact-periodic"],
    "wave1d": ["preset", "bspline-edges", "no-quasi-newton", "no-hard-constraints", "no-fourier"],
    "convection1d": ["preset", "no-quasi-newton", "no-exact-periodic", "no-marching"],
    "poisson2d": ["preset", "no-quasi-newton"],
}


@pytest.mark.parametrize("problem", list(EXPECTED))
def test_each_variant_turns_off_what_it_names_and_nothing_else(abl, problem):
    from kanpde.experiment.run import build

    preset = abl.preset_config(problem, quick=True)
    found = abl.variants(preset)
    assert list(found) == EXPECTED[problem] and found["preset"] == []
    base = OmegaConf.to_container(preset, resolve=True)
    for name, changes in found.items():
        cfg = OmegaConf.to_container(abl.preset_config(problem, True, changes), resolve=True)
        trainer = build("trainer", cfg["trainer"]).config  # every variant is a valid configuration
        differs = {f"{group}.{key}" for group in ("trainer", "problem", "model") for key in set(cfg[group]) | set(base[group])
                   if cfg[group].get(key) != base[group].get(key)}
        expected = {"preset": set(), "no-quasi-newton": {"trainer.optimizer"}, "no-rba": {"trainer.loss"}, "vrba": {"trainer.loss"},
                    "no-exact-periodic": {"problem.exact_periodic"}, "no-hard-constraints": {"problem.hard_constraints"},
                    "no-fourier": {"model.embedding"}, "no-marching": {"trainer.marching", "trainer.steps", "trainer.adam_steps"},
                    "no-rad": {"trainer.sampler"}, "no-keep-curvature": {"trainer.sampler"}, "bspline-edges": {"model.basis"},
                    "uniform-knots": {"trainer.knots"}}[name]
        if name == "no-quasi-newton":  # L-BFGS cannot keep curvature across a redraw or a knot change
            expected = expected | {f"trainer.{g}" for g in ("sampler", "knots") if base["trainer"][g]["keep_curvature"]}
        assert differs == expected, name
        if name == "no-quasi-newton":
            warm = base["trainer"]["optimizer"].startswith("adam_")  # poisson2d_best: ssbroyden alone
            assert trainer.optimizer == ("adam_lbfgs" if warm else "lbfgs") and trainer.adam_steps == base["trainer"]["adam_steps"]
        if name == "vrba":
            assert trainer.loss.rba and trainer.loss.rba_potential == "exponential"
        if name == "no-rad":
            assert trainer.sampler.adaptive == "none" and not trainer.sampler.keep_curvature
        if name == "no-keep-curvature":
            assert trainer.sampler.adaptive == "rad" and not trainer.sampler.keep_curvature
        if name == "uniform-knots":
            assert base["trainer"]["knots"]["method"] == "insert" and trainer.knots.method == "none"
        if name == "bspline-edges":
            assert base["model"]["basis"] == "chebyshev" and cfg["model"]["basis"] == "bspline"
        if name == "no-marching":  # the same budget in one window: 5 windows of 300 steps (100 Adam)
            assert not trainer.marches and (trainer.steps, trainer.adam_steps) == (1500, 500)


def _results(where, rel_l2, status="ok", basis="chebyshev"):
    attrs = {"problem": "burgers1d", "model": "KAN[2, 10, 10, 1]", "basis": basis, "family": "kan", "n_params": 1300,
             "rel_l2": rel_l2, "steps": 1500,
             "wall_time_s": 100.0, "status": status, "message": ""}
    write_results(where / "results.h5", attrs, history={"step": [0]}, evaluation={"x": np.zeros((1, 2))})


def test_main_builds_the_table_against_the_preset_and_reruns_only_what_is_not_ok(abl, tmp_path, monkeypatch, capsys):
    ran = []
    errors = {"preset": 1e-2, "bspline-edges": 2e-1, "no-quasi-newton": 5e-2, "no-rad": 4e-2}

    def fake(name, cmd, log):  # stands in for the subprocess: no-keep-curvature fails without results
        ran.append(name)
        variant = name.split()[1]
        assert f"hydra.run.dir={tmp_path}/runs/burgers1d/{variant}" in cmd and "trainer.resume=never" in cmd
        if variant in errors:
            basis = "bspline" if variant == "bspline-edges" else "chebyshev"
            _results(tmp_path / "runs" / "burgers1d" / variant, errors[variant], basis=basis)
            return 0
        return 1
    monkeypatch.setattr(abl, "run_one", fake)
    monkeypatch.setattr(abl, "hardware", lambda: "test cpu")
    _results(tmp_path / "runs" / "burgers1d" / "no-keep-curvature", 3e-3, status="failed")  # stale: run again (and removed first)
    _results(tmp_path / "runs" / "burgers1d" / "no-rad", 4e-2)  # ok already: not run again
    assert abl.main(["--quick", "--problems", "burgers1d", "--out", str(tmp_path)]) == 1
    assert sorted(ran) == ["burgers1d bspline-edges", "burgers1d no-keep-curvature", "burgers1d no-quasi-newton", "burgers1d preset"]
    rows = {r["variant"]: r for r in csv.DictReader((tmp_path / "ablation.csv").open())}
    assert float(rows["no-quasi-newton"]["vs_preset"]) == pytest.approx(5.0) and float(rows["no-rad"]["vs_preset"]) == pytest.approx(4.0)
    assert rows["no-keep-curvature"]["status"] == "missing" and math.isnan(float(rows["no-keep-curvature"]["rel_l2"]))
    assert rows["no-quasi-newton"]["overrides"] == "trainer.optimizer=lbfgs trainer.sampler.keep_curvature=false"
    md = (tmp_path / "ablation.md").read_text()
    assert md in capsys.readouterr().out
    assert rows["bspline-edges"]["model"] == "KAN[2, 10, 10, 1]" and rows["preset"]["model"] == "KAN[2, 10, 10, 1] chebyshev"
    assert "| burgers1d | KAN[2, 10, 10, 1] chebyshev | no-rad | `trainer.sampler.adaptive=none trainer.sampler.keep_curvature=false` | 0.04 | 4.00 |" in md


def test_bad_arguments_exit_2(abl, capsys):
    assert abl.main(["--problems", "heat3d", "--dry-run"]) == 2
    assert "heat3d" in capsys.readouterr().err
    assert abl.main(["--jobs", "0", "--dry-run"]) == 2


def test_a_preset_with_rba_gets_the_rba_variants(abl):
    """No preset uses RBA today; one that does gets ``no-rba`` and, for RBA's linear weights, ``vrba``."""
    preset = abl.preset_config("burgers1d", True, ["trainer.loss.rba=true"])
    found = abl.variants(preset)
    assert found["no-rba"] == ["trainer.loss.rba=false"] and found["vrba"] == ["trainer.loss.rba_potential=exponential"]
    assert "vrba" not in abl.variants(abl.preset_config("burgers1d", True, ["trainer.loss.rba=true",
                                                                           "trainer.loss.rba_potential=exponential"]))


def test_the_mlp_gets_no_kan_only_variant(abl):
    """``--model mlp`` runs the same variants with an MLP, which has no edge basis to switch and no knots."""
    preset = abl.preset_config("burgers1d", True)
    assert "bspline-edges" in abl.variants(preset) and "bspline-edges" not in abl.variants(preset, "mlp")
    preset = abl.preset_config("allen_cahn1d", True)
    assert "uniform-knots" in abl.variants(preset) and "uniform-knots" not in abl.variants(preset, "mlp")
