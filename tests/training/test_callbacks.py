"""The callback protocol: hook order, optimiser switch, history rows, user callbacks and extra loss terms."""
from __future__ import annotations

import pytest
import torch

from conftest import setup_kan
from kanpde import Callback, Trainer


class Recorder(Callback):
    """Writes down every hook call with the step it happened at."""

    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith("on_") or name == "extra_terms":
            calls = object.__getattribute__(self, "calls")

            def logged(state, *args):
                calls.append((name, state.step))
                return attr(state, *args)
            return logged
        return attr


def test_hooks_run_in_the_documented_order(f64, poisson):
    model, points = setup_kan(poisson, [1, 3, 1])
    rec = Recorder()
    Trainer(optimizer="adam", steps=2, progress=False, grid_extension={"at": [1], "grids": [10]}, callbacks=[rec]).fit(poisson, model, points)
    # on_record comes from the history recorder's on_step_end, which runs before the user's callbacks
    assert rec.calls == [
        ("on_fit_start", 0),
        ("on_step_start", 0), ("on_squares", 0), ("on_objective", 0), ("extra_terms", 0), ("on_record", 0), ("on_step_end", 0),
        ("on_stage_end", 1), ("on_model_change", 1),  # the extension at step 1, before the step
        ("on_step_start", 1), ("on_squares", 1), ("on_objective", 1), ("extra_terms", 1), ("on_record", 1), ("on_step_end", 1),
        ("on_stage_end", 2), ("on_fit_end", 2),
    ]


def test_adam_then_lbfgs_switches_at_adam_steps(f64, poisson):
    model, points = setup_kan(poisson, [1, 3, 1])
    seen = []

    class Optimizers(Callback):
        def on_step_end(self, state):
            seen.append(type(state.optimizer).__name__)

    Trainer(optimizer="adam_lbfgs", adam_steps=3, steps=5, progress=False, callbacks=[Optimizers()]).fit(poisson, model, points)
    assert seen == ["Adam", "Adam", "Adam", "LBFGS", "LBFGS"]


@pytest.mark.parametrize("steps, logged", [(7, [0, 3, 6]), (8, [0, 3, 6, 7])])
def test_history_rows_every_log_every_steps_and_the_last(f64, poisson, steps, logged):
    model, points = setup_kan(poisson, [1, 3, 1])
    history = Trainer(optimizer="adam", steps=steps, log_every=3, progress=False).fit(poisson, model, points).history
    assert history["step"] == logged
    assert all(len(v) == len(logged) for v in history.values())


def test_plain_functions_run_after_every_step(f64, poisson):
    model, points = setup_kan(poisson, [1, 3, 1])
    steps = []
    Trainer(optimizer="adam", steps=4, progress=False, callbacks=[lambda step, m: steps.append((step, m is model))]).fit(poisson, model, points)
    assert steps == [(0, True), (1, True), (2, True), (3, True)]


class Penalty(Callback):
    """Adds c·|coefficients|² to the loss as the term ``l2``."""

    columns = ("loss_l2",)

    def __init__(self, c):
        self.c = c

    def extra_terms(self, state):
        return {"l2": self.c * sum(p.square().sum() for p in state.model.parameters())}


def test_a_callbacks_extra_term_enters_the_loss_and_the_history(f64, poisson):
    model, points = setup_kan(poisson, [1, 3, 1])
    with torch.no_grad():
        expected = 0.5 * sum(p.square().sum() for p in model.parameters()).item()
    history = Trainer(optimizer="adam", steps=1, progress=False, callbacks=[Penalty(0.5)]).fit(poisson, model, points).history
    assert history["loss_l2"][0] == pytest.approx(expected, rel=1e-12)
    plain = sum(poisson.weights[t] * history[f"loss_{t}"][0] for t in poisson.terms)
    assert history["loss"][0] == pytest.approx(plain + expected, rel=1e-12)


def test_trainer_takes_settings_or_a_config_not_both():
    from kanpde import TrainerConfig

    assert Trainer(TrainerConfig(steps=5)).config == Trainer(steps=5).config
    with pytest.raises(ValueError, match="not both"):
        Trainer(TrainerConfig(), steps=5)
    with pytest.raises(ValueError, match="trainer.loss takes rba"):
        Trainer(loss={"rbaa": True})
