"""End to end through ``python -m kanpde``: short runs, what they write, and how bad input is reported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_config
from kanpde.experiment.run import ConfigError, run
from kanpde.io import load_model, read_results
from kanpde.models import native

ROOT = Path(__file__).resolve().parents[2]


def kanpde(*overrides: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m kanpde`` with Hydra overrides (threads: the worker's share, tests/conftest.py)."""
    return subprocess.run(
        [sys.executable, "-m", "kanpde", *overrides], cwd=cwd, capture_output=True, text=True, timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_kan_run_writes_results_model_and_plots(tmp_path):
    out = tmp_path / "run"
    proc = kanpde("problem=poisson1d", "model.width=[1,5,1]", "trainer.steps=120", "trainer.grid_extension.at=[60]",
                  "trainer.grid_extension.grids=[10]", "trainer.progress=false", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr
    summary = [line for line in proc.stdout.splitlines() if "rel_l2=" in line]
    assert len(summary) == 1 and "n_params=" in summary[0] and "wall_time=" in summary[0]
    for name in ("results.h5", "model.pt", "solution.png", "history.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not list(out.glob("*.tmp"))
    res = read_results(out / "results.h5")
    a = res["attrs"]
    assert a["problem"] == "poisson1d" and a["family"] == "kan" and a["status"] == "ok"
    assert a["n_params"] == 5 * (10 + 3 + 2) * 2  # two layers of 5 edges after extension to G=10
    assert a["steps"] == 120 and a["seed"] == 0 and a["dtype"] == "float64" and a["device"] == "cpu"
    assert a["rel_l2"] < 1e-2
    assert "poisson1d" in a["config"] or "Poisson1D" in a["config"]
    for key in ("step", "time_s", "loss", "loss_pde", "loss_dirichlet", "rel_l2"):
        assert len(res["history"][key]) == len(res["history"]["step"]) > 5
    # the saved model reproduces the saved prediction, on the CPU
    x = torch.from_numpy(res["eval"]["x"])
    model = load_model(out / "model.pt")
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), res["eval"]["u_pred"], rtol=0, atol=1e-12)
    # and the stored errors are those of that prediction
    err = res["eval"]["u_pred"] - res["eval"]["u_exact"]
    assert a["mse"] == pytest.approx(np.mean(err**2), rel=1e-9)
    assert a["max_abs_err"] == pytest.approx(np.abs(err).max(), rel=1e-9)


@pytest.mark.slow
def test_mlp_runs_the_same_problem(tmp_path):
    proc = kanpde("problem=poisson2d", "model=mlp", "model.width=[2,16,16,1]", "problem.n_interior=300", "problem.n_boundary=40",
                  "trainer.steps=15", "trainer.progress=false", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    a = read_results(tmp_path / "results.h5")["attrs"]
    assert a["family"] == "mlp" and a["n_params"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1
    assert a["n_interior"] == 300 and a["n_boundary"] == 40 and a["status"] == "ok"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trainer.optimizer=sgd"], "trainer.optimizer"),
        (["model.width=[3,10,1]"], "model.width"),
        (["model=mlp", "model.width=[2,10,2]"], "model.width"),
        (["trainer.steps=0"], "trainer.steps"),
        (["problem.n_interior=-1"], "problem.n_interior"),
        (["problem.sampler=grid"], "problem.sampler"),
        (["trainer.dtype=half"], "trainer.dtype"),
        (["model.k=0"], "model.k"),
    ],
)
def test_bad_config_values_fail_before_training_naming_the_field(tmp_path, overrides, expected):
    """In process, what the command line runs: a ConfigError naming the field, and no results file."""
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        run(compose_config(*overrides, "trainer.progress=false"), tmp_path)
    assert not (tmp_path / "results.h5").exists()


@pytest.mark.slow
def test_bad_config_value_fails_fast_with_one_line(tmp_path):
    """Through the command line: exit status 2, one line on stderr naming the field, no traceback, no results."""
    proc = kanpde("model.grid=-5", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("kanpde: invalid config:") and "model.grid" in err[0], err[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results.h5").exists()


@pytest.mark.slow
def test_unknown_problem_lists_the_available_ones(tmp_path):
    proc = kanpde("problem=poisson3d", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0
    assert "poisson3d" in proc.stderr and "poisson2d" in proc.stderr and "poisson1d" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_mistyped_key_is_rejected(tmp_path):
    proc = kanpde("model.gird=10", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and "gird" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_wheel_ships_the_configs(tmp_path):
    """A non-editable install finds its configs inside the package (kanpde/conf)."""
    pytest.importorskip("setuptools")
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)
    wheel = next(wheel_dir.glob("kanpde-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {"PYTHONPATH": str(target)}
    # where the configs are; the CPU kernel's source ships too, and the installed package builds it (into a fresh cache)
    probe = ("import torch, kanpde.experiment.configs as c; from kanpde.models import native; "
             "print(c.config_dir(), native.SOURCE, native.library(torch.float64) is not None)")
    where, source, built = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                                          env={**os.environ, **env, "KANPDE_CACHE": str(tmp_path / "cache")}).stdout.split()
    assert Path(where) == target / "kanpde" / "conf"
    assert Path(source) == target / "kanpde" / "models" / "layer_jet.c" and Path(source).is_file()
    assert built == str(native.compiler() is not None)
    # the catalogue installs inside the package: no generic top-level `problems` for a user's folder to shadow
    assert (target / "kanpde" / "problems" / "poisson.py").is_file() and not (target / "problems").exists()
    proc = kanpde("problem=poisson2d_sin", "--cfg", "job", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "kanpde.problems.poisson.Poisson2DSin" in proc.stdout and "kanpde.models.kan.KAN" in proc.stdout
    # the sweep presets and launcher configs (two levels deep in conf/) ship too
    proc = kanpde("+experiment=poisson_scaling_mlp", "hydra/launcher=slurm", "--cfg", "all", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "kanpde.models.mlp.MLP" in proc.stdout and "adam_lbfgs" in proc.stdout
    assert "SlurmLauncher" in proc.stdout and "cpus_per_task: 4" in proc.stdout
