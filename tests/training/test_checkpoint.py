"""Checkpoints: a run stopped after any step and resumed ends with the uninterrupted run's history."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import setup_kan
from kanpde import Callback, Trainer
from kanpde.problems.heat import Diffusion1D
from kanpde.problems.poisson import Poisson1D
from kanpde.training.callbacks.checkpointing import Checkpointing
from kanpde.training.checkpoint import CheckpointError, load_checkpoint


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Dies in the middle of step ``step`` (as a killed process would: no clean end)."""

    def __init__(self, step):
        self.step = step

    def on_step_start(self, state):
        if state.step == self.step:
            raise Crash


def poisson1d():
    return Poisson1D(n_interior=200)


def diffusion1d():
    return Diffusion1D(n_interior=200, n_boundary=20)


SETTINGS = {
    "lbfgs+extension": dict(optimizer="lbfgs", steps=12, grid_extension={"at": [5], "grids": [10]}),
    "adam+rad+rba+schedule": dict(optimizer="adam", steps=12, lr=1e-2, sampler={"adaptive": "rad", "period": 4, "pool": 600},
                                  loss={"rba": True}, schedule={"warmup": 3, "decay": "cosine"}),
    "adam_lbfgs": dict(optimizer="adam_lbfgs", adam_steps=6, steps=12),
    "adam_ssbroyden": dict(optimizer="adam_ssbroyden", adam_steps=2, steps=12),
    "adam+ntk": dict(optimizer="adam", steps=12, lr=1e-2, loss={"balance": "ntk", "balance_period": 3, "ntk_points": 8}),
    "adam+knots.move": dict(optimizer="adam", steps=12, lr=1e-2, knots={"method": "move", "every": 4, "insert": 2}),
    "lbfgs+knot-insert extension+follow": dict(optimizer="lbfgs", steps=12, grid_update="follow",
                                               grid_extension={"at": [5], "grids": [10], "method": "insert"}),
}


def _fit(make_problem, tmp_path, settings, crash=None, resume=None, every=1):
    """A fresh problem per run: a problem's cached derivative plans change the last bit of later runs' losses."""
    problem = make_problem()
    model, points = setup_kan(problem, [problem.domain.dim, 3, 1])
    callbacks = [CrashAt(crash)] if crash is not None else []
    trainer = Trainer(log_every=1, progress=False, callbacks=callbacks, **settings)
    ckpt = Checkpointing(tmp_path / "checkpoint.pt", every, trainer.steps)
    return trainer.fit(problem, model, points, problem.eval_points(), seed=2, resume=resume, extra_callbacks=[ckpt]), model


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key != "time_s":
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("crash", [3, 7])
def test_resume_after_a_crash_reproduces_the_uninterrupted_run(f64, tmp_path, name, crash):
    full, full_model = _fit(poisson1d, tmp_path / "full", SETTINGS[name])
    with pytest.raises(Crash):
        _fit(poisson1d, tmp_path / "cut", SETTINGS[name], crash=crash)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == crash - 1
    resumed, resumed_model = _fit(poisson1d, tmp_path / "cut", SETTINGS[name], resume=tmp_path / "cut" / "checkpoint.pt")
    _same(full.history, resumed.history)
    _same(full.stages, resumed.stages)
    assert resumed.steps_done == full.steps_done == 12
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_causal_weights_resume_exactly(f64, tmp_path):
    settings = dict(optimizer="adam", steps=8, lr=1e-2, loss={"causal": {"eps": 1.0, "slabs": 4}})
    full, _ = _fit(diffusion1d, tmp_path / "full", settings)
    with pytest.raises(Crash):
        _fit(diffusion1d, tmp_path / "cut", settings, crash=5)
    resumed, _ = _fit(diffusion1d, tmp_path / "cut", settings, resume=tmp_path / "cut" / "checkpoint.pt")
    _same(full.history, resumed.history)


def test_checkpoints_every_few_steps_and_at_the_end(f64, tmp_path):
    with pytest.raises(Crash):
        _fit(poisson1d, tmp_path, SETTINGS["adam_lbfgs"], crash=9, every=4)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 7  # after steps 4 and 8 (0-based 3 and 7)
    _fit(poisson1d, tmp_path, SETTINGS["adam_lbfgs"], every=4)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 11


def test_a_checkpoint_of_another_run_is_refused_naming_the_difference(f64, tmp_path):
    _fit(poisson1d, tmp_path, SETTINGS["adam_lbfgs"])
    with pytest.raises(CheckpointError, match="belongs to another run.*trainer"):
        _fit(poisson1d, tmp_path / "other", dict(SETTINGS["adam_lbfgs"], lr=0.5), resume=tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="problem"):
        _fit(diffusion1d, tmp_path / "other", SETTINGS["adam_lbfgs"], resume=tmp_path / "checkpoint.pt")


def test_a_truncated_or_missing_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(path)
    torch.save({"format": 1, "step": 3}, path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="not a readable kanpde checkpoint"):
        load_checkpoint(path)


class Blowup(Callback):
    """Multiplies the last layer's coefficients by 1e6 after step 4: the loss grows by ~1e12 but stays finite."""

    def on_step_end(self, state):
        if state.step == 4:
            with torch.no_grad():
                state.model.layers[-1].coef.mul_(1e6)


def test_a_diverging_loss_ends_the_run_with_the_best_state(f64, poisson):
    model, points = setup_kan(poisson, [1, 3, 1])
    trainer = Trainer(optimizer="adam", steps=10, log_every=1, progress=False, callbacks=[Blowup()], divergence=1e6)
    result = trainer.fit(poisson, model, points)
    assert result.status == "diverged" and "diverged at step 5" in result.message
    assert result.steps_done == 5 and math.isfinite(result.history["loss"][-1])
    best = min(result.history["loss"])
    restored = sum(poisson.weights[t] * v.mean() for t, v in poisson.pointwise(model, points).items())
    assert float(restored) < 10 * best  # the restored model is the best step's (its loss before that step's update)


def test_a_schedulers_timeout_warning_gets_a_checkpoint_before_its_handler(f64, tmp_path):
    """submitit sends SIGUSR2 (local) or SIGUSR1 (SLURM) before a time limit and requeues the job in its handler:
    the checkpoint of the step just finished is written first, then that handler runs, and training goes on."""
    import os
    import signal

    seen = []

    def scheduler(signum, frame):
        seen.append(load_checkpoint(tmp_path / "checkpoint.pt")["step"])

    class Warn(Callback):
        def on_step_end(self, state):
            if state.step == 3:
                os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, scheduler)
    try:
        problem = poisson1d()
        model, points = setup_kan(problem, [1, 3, 1])
        trainer = Trainer(optimizer="adam", steps=6, progress=False, callbacks=[Warn()])
        result = trainer.fit(problem, model, points, extra_callbacks=[Checkpointing(tmp_path / "checkpoint.pt", 0, 6)])
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [3] and result.status == "ok" and result.steps_done == 6
    assert signal.getsignal(signal.SIGUSR2) is previous
