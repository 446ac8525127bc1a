"""Trainer: optimisers reduce the loss, grid extension mid-run, a non-finite loss stops cleanly, bad settings fail early."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kanpde import KAN, MLP
from kanpde.pde.metrics import errors
from kanpde.training.trainer import Trainer
from kanpde.problems.poisson import Poisson1D


@pytest.fixture
def problem():
    return Poisson1D(n_interior=64, n_boundary=2)


def _kan(seed: int = 0) -> KAN:
    torch.manual_seed(seed)
    return KAN([1, 3, 1], grid=5, k=3, bounds=([-1.0], [1.0]))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "adam_lbfgs"])
def test_optimisers_reduce_the_error(problem, optimizer):
    steps = 200 if optimizer == "adam" else 60
    trainer = Trainer(optimizer=optimizer, steps=steps, lr=2e-2, adam_steps=30, progress=False, log_every=5, device="cpu")
    model = _kan()
    res = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points())
    assert res.status == "ok" and res.steps_done == steps
    h = res.history
    assert h["step"][0] == 0 and h["step"][-1] == steps - 1
    assert set(h) >= {"step", "time_s", "loss", "loss_pde", "loss_dirichlet", "rel_l2", "grid"}
    assert h["rel_l2"][-1] < 0.5 * h["rel_l2"][0]
    assert h["loss"][-1] < 1e-2 * h["loss"][0]


@pytest.mark.slow
def test_lbfgs_solves_poisson1d_accurately():
    problem = Poisson1D()  # 256 interior points
    trainer = Trainer(optimizer="lbfgs", steps=150, progress=False, device="cpu")
    torch.manual_seed(0)
    model = KAN([1, 5, 1], grid=5, k=3, bounds=([-1.0], [1.0]))
    res = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points())
    assert res.history["rel_l2"][-1] < 5e-3
    assert res.history["loss"][-1] < 1e-3 * res.history["loss"][0]


def test_grid_extension_schedule(problem):
    trainer = Trainer(optimizer="lbfgs", steps=40, progress=False, log_every=1, device="cpu",
                      grid_extension={"at": [10, 25], "grids": [8, 16]})
    model = _kan()
    res = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points())
    grids = res.history["grid"]
    assert grids[9] == 5 and grids[10] == 8 and grids[24] == 8 and grids[25] == 16
    assert model.grid == 16
    assert model.layers[0].coef.shape == (1, 16 + 3, 3)
    # the refit keeps the function: the error does not jump at an extension
    assert res.history["rel_l2"][10] < 1.5 * res.history["rel_l2"][9]


class NaNAfter(nn.Module):
    """Wraps a model and returns NaN from the ``n``-th forward call on."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x):
        self.calls += 1
        y = self.inner(x)
        return y * math.nan if self.calls >= self.n else y


def test_non_finite_loss_stops_and_restores_last_good_state(problem):
    model = NaNAfter(MLP([1, 8, 1], bounds=([-1.0], [1.0])), n=2 * 7 + 1)  # two forwards (pde, bc) per Adam step
    trainer = Trainer(optimizer="adam", steps=50, progress=False, device="cpu")
    snapshots = []
    trainer.callbacks.append(lambda step, m: snapshots.append({k: v.clone() for k, v in m.state_dict().items()}))
    res = trainer.fit(problem, model, problem.sample_points(0))
    assert res.status == "failed"
    assert "step 7" in res.message and "non-finite" in res.message
    assert res.steps_done == 7
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[-1][k], rtol=0, atol=0)
        assert torch.isfinite(v).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"optimizer": "sgd"}, "trainer.optimizer"),
        ({"steps": 0}, "trainer.steps"),
        ({"steps": -3}, "trainer.steps"),
        ({"lr": -1.0}, "trainer.lr"),
        ({"dtype": "float16"}, "trainer.dtype"),
        ({"device": "tpu"}, "trainer.device"),
        ({"optimizer": "adam_lbfgs", "steps": 10, "adam_steps": 10}, "trainer.adam_steps"),
        ({"grid_extension": {"at": [5], "grids": []}}, "trainer.grid_extension"),
        ({"grid_extension": {"at": [9, 5], "grids": [10, 20]}}, "trainer.grid_extension.at"),
        ({"grid_extension": {"at": [5], "grids": [10], "every": 3}}, "trainer.grid_extension"),
        ({"grid_update": "always"}, "trainer.grid_update"),
        ({"derivatives": "reverse"}, "trainer.derivatives"),
        ({"compile": "yes"}, "trainer.compile"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Trainer(**kwargs)


def test_schedule_checked_against_the_model():
    with pytest.raises(ValueError, match="needs a KAN"):
        Trainer(grid_extension={"at": [5], "grids": [10]}).check_model(MLP([1, 4, 1]))
    with pytest.raises(ValueError, match=r"trainer\.grid_extension\.grids must increase"):
        Trainer(grid_extension={"at": [5, 9], "grids": [10, 8]})


def test_derivative_back_end_checked_against_the_model():
    class Plain(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match=r"trainer\.derivatives=forward"):
        Trainer(derivatives="forward").check_model(Plain())
    with pytest.raises(ValueError, match=r"trainer\.compile"):
        Trainer(compile=True).check_model(Plain())
    assert Trainer().derivative_backend(Plain()) == "autograd"
    assert Trainer().derivative_backend(_kan()) == "forward"


@pytest.mark.parametrize("make", [_kan, lambda: MLP([1, 6, 6, 1], bounds=([-1.0], [1.0]))])
def test_both_derivative_back_ends_train_the_same(problem, make):
    """Same model, points and optimiser: the loss histories agree to rounding (L-BFGS, 15 steps)."""
    hist = {}
    for backend in ("forward", "autograd"):
        torch.manual_seed(0)
        model = make().double()
        trainer = Trainer(optimizer="lbfgs", steps=15, log_every=1, progress=False, device="cpu", derivatives=backend)
        hist[backend] = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points()).history["loss"]
    a, b = torch.tensor(hist["forward"]), torch.tensor(hist["autograd"])
    assert ((a - b).abs() / b.abs()).max() < 1e-8
    assert a[-1] < 0.25 * a[0]


def test_schedule_only_refines(problem):
    """A grid already as fine as a scheduled size is kept, so one schedule serves a sweep over model.grid."""
    trainer = Trainer(optimizer="lbfgs", steps=20, progress=False, log_every=1, device="cpu",
                      grid_extension={"at": [5, 10], "grids": [8, 16]})
    assert trainer.extensions_for(KAN([1, 3, 1], grid=8)) == {10: 16}
    assert trainer.extensions_for(KAN([1, 3, 1], grid=16)) == {}
    model = KAN([1, 3, 1], grid=10, k=3, bounds=([-1.0], [1.0]))
    res = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points())
    assert res.history["grid"][9] == 10 and res.history["grid"][10] == 16 and model.grid == 16
    assert list(res.stages["grid"]) == [10, 16] and list(res.stages["step"]) == [10, 20]


def test_schedule_notes_name_kept_grids_and_non_refinements():
    trainer = Trainer(grid_extension={"at": [5, 10, 15], "grids": [8, 16, 40]})
    notes = trainer.schedule_notes(KAN([1, 3, 1], grid=10))
    assert len(notes) == 3
    assert "model.grid=10 is already as fine as scheduled grid(s) [8]" in notes[0] and "G=16 at step 10" in notes[0]
    assert "10 -> 16 at step 10 is not a refinement" in notes[1] and "16 -> 40 at step 15" in notes[2]
    notes = trainer.schedule_notes(KAN([1, 3, 1], grid=4))  # 4 -> 8 -> 16 refine; 16 -> 40 does not
    assert len(notes) == 1 and "16 -> 40" in notes[0]
    assert Trainer(grid_extension={"at": [5, 10], "grids": [10, 20]}).schedule_notes(KAN([1, 3, 1], grid=5)) == []


def test_stages_record_each_grid_before_extension(problem):
    trainer = Trainer(optimizer="lbfgs", steps=30, progress=False, device="cpu",
                      grid_extension={"at": [10, 20], "grids": [8, 16]})
    model = KAN([1, 3, 1], grid=5, k=3, bounds=([-1.0], [1.0]))
    res = trainer.fit(problem, model, problem.sample_points(0), problem.eval_points())
    st = res.stages
    assert list(st["step"]) == [10, 20, 30] and list(st["grid"]) == [5, 8, 16]
    assert list(st["n_params"]) == [3 * (g + 3 + 2) * 2 for g in (5, 8, 16)]
    # the last stage is the final model: its errors are those of the model now
    final = errors(model, problem.exact, problem.eval_points())
    for key in ("rel_l2", "mse", "h1_sq"):
        assert st[key][-1] == pytest.approx(final[key], rel=1e-12)
    assert all(h >= m for h, m in zip(st["h1_sq"], st["mse"]))


@pytest.mark.slow
def test_compiled_derivative_pass_trains_like_eager(problem):
    """trainer.compile=true wraps forward_jet in torch.compile; the loss history matches eager."""
    hist = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = _kan().double()
        trainer = Trainer(optimizer="adam", lr=1e-2, steps=4, log_every=1, progress=False, device="cpu", compile=compiled)
        hist[compiled] = torch.tensor(trainer.fit(problem, model, problem.sample_points(0), problem.eval_points()).history["loss"])
        assert "forward_jet" not in vars(model)  # the user's model is never patched
    assert ((hist[True] - hist[False]).abs() / hist[False].abs()).max() < 1e-9


def test_compile_leaves_higher_order_residuals_eager():
    """A residual with a third partial needs the jet's graph to x; with compile=true that pass stays eager."""
    from kanpde import Dirichlet, Interval, Problem

    class ThirdOrder(Problem):
        name, inputs = "third_order", ("x",)

        def __init__(self):
            super().__init__(Interval(-1, 1), [Dirichlet(0.0)], n_interior=32, n_boundary=2)

        def residual(self, f):
            return f.d("u", "x", "x", "x") - torch.cos(f["x"])

    problem = ThirdOrder()
    hist = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = _kan().double()
        trainer = Trainer(optimizer="adam", lr=1e-2, steps=3, log_every=1, progress=False, device="cpu", compile=compiled)
        hist[compiled] = torch.tensor(trainer.fit(problem, model, problem.sample_points(0)).history["loss"])
    assert ((hist[True] - hist[False]).abs() / hist[False].abs()).max() < 1e-9


def test_extensions_past_the_budget_are_skipped_with_a_note(f64):
    """trainer.steps=100 with the default KAN's schedule (extensions at 300 and 700) trains, extending nothing."""
    trainer = Trainer(optimizer="lbfgs", steps=6, progress=False, device="cpu", grid_extension={"at": [3, 300], "grids": [10, 20]})
    model = _kan()
    assert trainer.extensions_for(model) == {3: 10}
    notes = trainer.schedule_notes(model)
    assert any("G=20 at step 300" in n and "skipped" in n for n in notes)
    problem = Poisson1D(n_interior=32, n_boundary=2)
    res = trainer.fit(problem, model, problem.sample_points(0))
    assert res.status == "ok" and model.grid == 10
