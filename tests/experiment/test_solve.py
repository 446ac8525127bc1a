"""The Python API (kanpde.solve) against the CLI, the results record, logging and the run-level defects."""
from __future__ import annotations

import logging
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

import kanpde
from conftest import compose_config
from kanpde.experiment.run import run
from kanpde.experiment.solve import NonFiniteLoss, TrainingFailed
from kanpde.io import read_results
from kanpde.io.results import SCHEMA_VERSION, SchemaError
from kanpde.problems.poisson import Poisson1D

SETTINGS = dict(steps=25, log_every=5, progress=False, grid_extension={"at": [10], "grids": [10]})


def _python_run(tmp_path, seed=3):
    problem = Poisson1D(n_interior=64, n_boundary=2)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # the CLI builds the model in the trainer's dtype
    try:
        model = kanpde.KAN([1, 4, 1], grid=5, bounds=[b.tolist() for b in problem.domain.bounds()])
    finally:
        torch.set_default_dtype(old)
    return kanpde.solve(problem, model, kanpde.Trainer(**SETTINGS), out_dir=tmp_path / "api", seed=seed, plots=False)


def test_api_and_cli_give_the_same_history(tmp_path):
    api = _python_run(tmp_path)
    cfg = compose_config("problem=poisson1d", "problem.n_interior=64", "problem.n_boundary=2", "model.width=[1,4,1]", "seed=3",
                         "trainer.steps=25", "trainer.log_every=5", "trainer.progress=false", "plots=false",
                         "trainer.grid_extension.at=[10]", "trainer.grid_extension.grids=[10]")
    run(cfg, tmp_path / "cli")
    a, b = read_results(tmp_path / "api" / "results.h5"), read_results(tmp_path / "cli" / "results.h5")
    assert a["attrs"]["points_hash"] == b["attrs"]["points_hash"]
    for key in a["history"]:
        if key != "time_s":
            np.testing.assert_array_equal(a["history"][key], b["history"][key], err_msg=key)
    assert a["history"]["grid"][-1] == 10 and api.errors["rel_l2"] == a["attrs"]["rel_l2"]
    assert (tmp_path / "api" / "model.pt").is_file()


def test_python_run_records_its_settings(tmp_path):
    api = _python_run(tmp_path)
    saved = read_results(tmp_path / "api" / "results.h5")
    assert saved["attrs"]["schema_version"] == SCHEMA_VERSION
    assert "steps: 25" in saved["attrs"]["config"] and "Poisson1D" in saved["attrs"]["config"]
    assert api.history["loss"][-1] < api.history["loss"][0]


def test_unknown_schema_version_is_refused(tmp_path):
    _python_run(tmp_path)
    path = tmp_path / "api" / "results.h5"
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(SchemaError, match="schema_version 99"):
        read_results(path)
    with h5py.File(path, "a") as f:  # a file from before the record had a version reads as version 1
        del f.attrs["schema_version"]
        del f.attrs["created"]
    attrs = read_results(path)["attrs"]
    assert attrs["schema_version"] == 1 and attrs["created"] == ""


class Exploding(kanpde.Callback):
    """Makes the PDE objective NaN from step 4 on."""

    def on_objective(self, state, objective, squares):
        if state.step >= 4:
            objective["pde"] = objective["pde"] * math.nan
        return objective


def test_non_finite_training_raises_after_writing(tmp_path):
    problem = Poisson1D(n_interior=32, n_boundary=2)
    model = kanpde.KAN([1, 3, 1], bounds=[b.tolist() for b in problem.domain.bounds()])
    trainer = kanpde.Trainer(optimizer="adam", steps=10, progress=False, callbacks=[Exploding()])
    with pytest.raises(NonFiniteLoss, match="non-finite loss at step 4"):
        kanpde.solve(problem, model, trainer, out_dir=tmp_path, plots=False)
    attrs = read_results(tmp_path / "results.h5")["attrs"]
    assert attrs["status"] == "failed" and attrs["steps"] == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert issubclass(NonFiniteLoss, TrainingFailed)


def test_run_lines_go_to_the_kanpde_logger(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="kanpde"):
        _python_run(tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.name == "kanpde"]
    assert any("ssbroyden for 25 steps" in line for line in lines) and any("rel_l2=" in line for line in lines)


def test_rad_draws_depend_on_the_seed():
    """RAD's candidate pool and draw follow the run seed (they used to follow the step alone)."""
    problem = Poisson1D(n_interior=50, n_boundary=2)
    moved = []
    for seed in (0, 1, 1):
        torch.manual_seed(0)
        model = kanpde.KAN([1, 3, 1], bounds=[b.tolist() for b in problem.domain.bounds()])
        trainer = kanpde.Trainer(optimizer="adam", steps=3, progress=False, sampler={"adaptive": "rad", "period": 2, "pool": 500})
        moved.append(trainer.fit(problem, model, problem.sample_points(0), seed=seed).points["pde"]["x"])
    assert not torch.equal(moved[0], moved[1])
    torch.testing.assert_close(moved[1], moved[2], rtol=0, atol=0)


@pytest.mark.slow
def test_importing_kanpde_leaves_the_matplotlib_backend_alone():
    code = ("import matplotlib; matplotlib.use('svg'); import kanpde, kanpde.analysis.figures, kanpde.experiment.solve, "
            "kanpde.interpret.activations; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


def test_progress_bar_switches_itself_off_without_a_terminal(tmp_path):
    from kanpde.training.callbacks.progress import ProgressBar

    bar = ProgressBar(steps=3, enabled=True)

    class State:
        pass

    bar.on_fit_start(State())
    assert bar.bar.disable  # pytest captures stderr: not a terminal
    bar.bar.close()


def test_tensorboard_logger_writes_the_history(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kanpde.training.callbacks.tensorboard import TensorBoardLogger

    problem = Poisson1D(n_interior=32, n_boundary=2)
    model = kanpde.KAN([1, 3, 1], bounds=[b.tolist() for b in problem.domain.bounds()])
    trainer = kanpde.Trainer(optimizer="adam", steps=6, log_every=2, progress=False, callbacks=[TensorBoardLogger(tmp_path)])
    result = trainer.fit(problem, model, problem.sample_points(0))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Scalars("loss")
    assert [s.step for s in scalars] == [0, 2, 4, 5]
    np.testing.assert_allclose([s.value for s in scalars], result.history["loss"], rtol=1e-6)
