"""Time-marching (trainer.marching): windows that tile the time range and stitch exactly."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

from kanpde import KAN, MLP, Trainer, solve
from kanpde.experiment.solve import Interrupted
from kanpde.io import load_model, read_results
from kanpde.problems.heat import Diffusion1D
from kanpde.problems.poisson import Poisson1D
from kanpde.problems.waves import Wave1D
from kanpde.training.callbacks.base import Callback
from kanpde.training.checkpoint import CheckpointError
from kanpde.training.marching import Marched, WindowNets, window_ends, window_problem


def test_windows_tile_the_time_range():
    assert window_ends(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert window_ends(0.0, 2.0, 1, [0.5, 1.5]) == [0.0, 0.5, 1.5, 2.0]
    for bad in ([0.5, 0.2], [0.0, 0.5], [0.5, 2.0], [0.5, 0.5]):
        with pytest.raises(ValueError, match=r"trainer.marching.breaks must increase strictly inside the time range \(0.0, 1.0\)"):
            window_ends(0.0, 1.0, 1, bad)
    with pytest.raises(ValueError, match="give windows=3 or breaks=\\[0.5\\], not both"):
        Trainer(marching={"windows": 3, "breaks": [0.5]})


def _random_marched(problem, ends, cls=MLP, width=(2, 6, 1)):
    lo, hi = problem.domain.bounds()
    nets = []
    for w in range(len(ends) - 1):
        torch.manual_seed(w)
        nets.append(cls(list(width), bounds=(lo.tolist(), hi.tolist())).double())
    return Marched(problem, WindowNets.of(nets, ends))


@pytest.mark.parametrize("cls", [MLP, KAN])
def test_windows_stitch_continuously_for_any_weights(f64, cls):
    problem = Diffusion1D()
    marched = _random_marched(problem, [0.0, 0.3, 0.7, 1.0], cls, (2, 5, 1))
    x = torch.linspace(0, 1, 21)
    for w, tb in ((1, 0.3), (2, 0.7)):
        at = torch.stack([x, torch.full_like(x, tb)], 1)
        before, after = marched.window_model(w - 1)(at), marched.window_model(w)(at)
        torch.testing.assert_close(after, before, rtol=0, atol=1e-14)  # the next window's imposed initial value
        torch.testing.assert_close(marched(at), after, rtol=0, atol=0)  # a boundary time belongs to the later window
    start = torch.stack([x, torch.zeros_like(x)], 1)
    torch.testing.assert_close(marched(start)[:, 0], torch.sin(torch.pi * x), rtol=0, atol=1e-15)


def test_a_later_window_continues_the_initial_rate_of_the_earlier_ones(f64):
    problem = Wave1D()
    earlier = _random_marched(problem, [0.0, 0.5])
    sub = window_problem(problem, 0.5, 1.0, earlier)
    assert sub.terms == ["pde", "dirichlet", "initialrate"] and "initial" not in sub.sample_points(0)
    x = torch.rand(7, 1)
    rate = next(c for c in sub.conditions if c.name == "initialrate").target(torch.cat([x, torch.full_like(x, 0.5)], 1))
    h = 1e-6
    fd = (earlier(torch.cat([x, torch.full_like(x, 0.5 + h)], 1)) - earlier(torch.cat([x, torch.full_like(x, 0.5 - h)], 1)))[:, 0] / (2 * h)
    torch.testing.assert_close(rate, fd, rtol=1e-6, atol=1e-8)
    assert sub.domain.t0 == 0.5 and problem.domain.t0 == 0.0  # the problem itself is untouched


def test_a_marching_run_is_one_run_with_one_results_file(f64, tmp_path):
    problem = Diffusion1D(n_interior=150, n_boundary=30)
    lo, hi = problem.domain.bounds()
    torch.manual_seed(0)
    net = MLP([2, 8, 1], bounds=(lo.tolist(), hi.tolist()))
    run = solve(problem, net, Trainer(steps=15, log_every=5, progress=False, marching={"windows": 3}), out_dir=tmp_path, plots=False)
    res = read_results(tmp_path / "results.h5")
    h = res["history"]
    np.testing.assert_array_equal(h["window"], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(h["step"], [0, 5, 10, 14, 15, 20, 25, 29, 30, 35, 40, 44])
    assert "loss_initial" not in h and res["attrs"]["windows"] == 3 and res["attrs"]["steps"] == 45
    assert res["attrs"]["n_params"] == 3 * net.n_params()
    assert len(res["stages"]["step"]) == 3
    saved = load_model(tmp_path / "model.pt").double()
    assert isinstance(saved, WindowNets) and saved.ends == pytest.approx([0, 1 / 3, 2 / 3, 1])
    x = torch.as_tensor(res["eval"]["x"])
    torch.testing.assert_close(Marched(problem, saved)(x), torch.as_tensor(res["eval"]["u_pred"]), rtol=1e-12, atol=1e-14)
    assert run.errors["rel_l2"] == pytest.approx(res["attrs"]["rel_l2"])


def test_without_transfer_each_window_starts_from_a_fresh_network(f64):
    problem = Diffusion1D(n_interior=60, n_boundary=20)
    seen = []
    for transfer in (True, False):
        torch.manual_seed(0)
        net = MLP([2, 5, 1], bounds=([0.0, 0.0], [1.0, 1.0]))
        trainer = Trainer(steps=3, progress=False, marching={"windows": 2, "transfer": transfer},
                          callbacks=[lambda step, model: seen.append((transfer, step, model.net.net[0].weight.detach().clone()))])
        run = solve(problem, net, trainer, seed=5, plots=False)
        assert len(run.model.windows.nets) == 2
    start = {t: [w for tt, s, w in seen if tt == t] for t in (True, False)}
    # window 2's first step starts from window 1's last weights with transfer, from a seed-6 initialisation without
    torch.manual_seed(6)
    fresh = MLP([2, 5, 1], bounds=([0.0, 0.0], [1.0, 1.0])).net[0].weight
    assert not torch.equal(start[False][3], start[True][3])
    assert float((start[False][3] - fresh).abs().max()) < float((start[True][3] - fresh).abs().max())


def test_marching_needs_time_an_initial_value_and_no_hard_constraints_of_its_own():
    trainer = Trainer(steps=2, marching={"windows": 2})
    with pytest.raises(ValueError, match="trainer.marching cuts the time range into windows, and poisson1d has no time input"):
        solve(Poisson1D(), MLP([1, 4, 1]), trainer)
    with pytest.raises(ValueError, match="set problem.hard_constraints=false"):
        solve(Diffusion1D(hard_constraints=True), MLP([2, 4, 1]), trainer)
    with pytest.raises(ValueError, match="breaks must increase strictly inside the time range"):
        solve(Diffusion1D(), MLP([2, 4, 1]), Trainer(steps=2, marching={"breaks": [1.5]}))


def test_one_window_is_plain_training(f64):
    histories = []
    for settings in ({}, {"marching": {"windows": 1}}):
        problem = Diffusion1D(n_interior=100, n_boundary=20)
        torch.manual_seed(0)
        net = MLP([2, 6, 1], bounds=([0.0, 0.0], [1.0, 1.0]))
        histories.append(solve(problem, net, Trainer(steps=5, log_every=1, progress=False, **settings), plots=False).history)
    assert "window" not in histories[1]
    np.testing.assert_array_equal(histories[0]["loss"], histories[1]["loss"])


class _StopInWindow(Callback):
    """Sends this process SIGTERM at ``step`` of window ``window`` (the run's checkpointing hears it)."""

    def __init__(self, window: int, step: int) -> None:
        self.window, self.step, self.fits = window, step, -1

    def on_fit_start(self, state) -> None:
        self.fits += 1

    def on_step_end(self, state) -> None:
        if self.fits == self.window and state.step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.mark.parametrize("window,step", [(1, 6), (0, 3)])
def test_an_interrupted_marching_run_resumes_to_the_uninterrupted_history(f64, tmp_path, window, step):
    """Every window writes its checkpoint; a run stopped inside a window continues there (the finished windows
    come back from their checkpoints without a step), and ends with the uninterrupted run's history and networks."""
    problem = Diffusion1D(n_interior=120, n_boundary=20)
    lo, hi = problem.domain.bounds()

    def run(out, *callbacks):
        torch.manual_seed(0)
        net = MLP([2, 6, 1], bounds=(lo.tolist(), hi.tolist()))
        trainer = Trainer(steps=12, log_every=1, progress=False, marching={"windows": 3}, checkpoint={"every": 5},
                          callbacks=list(callbacks))
        return solve(problem, net, trainer, out_dir=out, plots=False)

    run(tmp_path / "whole")
    with pytest.raises(Interrupted, match=f"window {window + 1} of 3 .*interrupted by SIGTERM after step {step};"):
        run(tmp_path / "part", _StopInWindow(window, step))
    assert read_results(tmp_path / "part" / "results.h5")["attrs"]["status"] == "interrupted"
    assert sorted(p.name for p in (tmp_path / "part").glob("checkpoint.window*.pt")) == [f"checkpoint.window{w}.pt" for w in range(window + 1)]
    run(tmp_path / "part")
    whole, part = (read_results(tmp_path / d / "results.h5") for d in ("whole", "part"))
    assert part["attrs"]["status"] == "ok" and part["attrs"]["steps"] == 36
    for key in whole["history"]:
        if key != "time_s":
            np.testing.assert_array_equal(part["history"][key], whole["history"][key], err_msg=key)
    np.testing.assert_array_equal(part["eval"]["u_pred"], whole["eval"]["u_pred"])


def test_a_marching_run_refuses_to_continue_from_one_named_checkpoint(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="one checkpoint per window"):
        solve(Diffusion1D(n_interior=20, n_boundary=8), MLP([2, 4, 1]),
              Trainer(steps=2, progress=False, marching={"windows": 2}, resume=str(tmp_path / "c.pt")), out_dir=tmp_path / "o", plots=False)
