"""RAD, RBA, causal weighting and learning-rate schedules inside training (the functions: test_adaptive.py)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from kanpde.training.callbacks.causal import slab_index
from kanpde.training.callbacks.grid_extension import adam_moments, restore_moments
from kanpde.models import KAN
from kanpde.training.trainer import Trainer
from kanpde.problems.heat import Diffusion1D
from kanpde.problems.poisson import Poisson1D


def _setup(problem, width, seed=0):
    torch.manual_seed(seed)
    lower, upper = problem.domain.bounds()
    return KAN(width, grid=5, bounds=(lower.tolist(), upper.tolist())).double(), problem.sample_points(seed)


@pytest.fixture
def poisson():
    return Poisson1D(n_interior=200)


def test_every_technique_off_reproduces_plain_training(f64, poisson):
    off = dict(loss={"rba": False, "causal": {"eps": 0.0}}, sampler={"adaptive": "none"},
               schedule={"warmup": 0, "decay": "none"})
    for optimizer in ("adam", "lbfgs"):
        results = []
        for extra in ({}, off):
            net, pts = _setup(poisson, [1, 3, 1])
            results.append(Trainer(optimizer=optimizer, steps=15, log_every=1, progress=False, device="cpu", **extra).fit(poisson, net, pts))
        assert results[0].history["loss"] == results[1].history["loss"]


def test_rba_weights_follow_the_update_rule(f64, poisson):
    net, pts = _setup(poisson, [1, 3, 1])
    start = copy.deepcopy(net)
    result = Trainer(optimizer="adam", steps=1, progress=False, device="cpu",
                     loss={"rba": True, "gamma": 0.9, "eta": 0.05, "rba_boundary": True}).fit(poisson, net, pts)
    squares = poisson.pointwise(start, pts)
    for term in ("pde", "dirichlet"):
        r = squares[term].detach().sqrt()
        torch.testing.assert_close(result.attention[term], 0.9 * torch.ones_like(r) + 0.05 * r / r.max())


def test_rba_weights_enter_the_objective(f64, poisson):
    """Step 1's objective is sum_t w_t·mean((lam_t·r_t)²) with lam from step 0, by hand from the model after step 0."""
    net, pts = _setup(poisson, [1, 3, 1])
    snapshots = []
    trainer = Trainer(optimizer="adam", steps=2, log_every=1, progress=False, device="cpu", loss={"rba": True, "gamma": 0.5, "eta": 0.3},
                      callbacks=[lambda step, m: snapshots.append(copy.deepcopy(m))])
    start = copy.deepcopy(net)
    result = trainer.fit(poisson, net, pts)
    r0 = poisson.pointwise(start, pts)["pde"].detach().sqrt()
    lam = 0.5 + 0.3 * r0 / r0.max()
    sq = {t: v.detach() for t, v in poisson.pointwise(snapshots[0], pts).items()}
    w = poisson.weights
    expected = w["pde"] * (lam**2 * sq["pde"]).mean() + sum(w[t] * v.mean() for t, v in sq.items() if t != "pde")
    assert result.history["loss"][1] == pytest.approx(float(expected), rel=1e-12)
    assert result.history["loss_pde"][1] == pytest.approx(float(sq["pde"].mean()), rel=1e-12)  # logged plain


def test_causal_weights_shape_the_pde_term(f64):
    problem = Diffusion1D(n_interior=300, n_boundary=40)
    net, pts = _setup(problem, [2, 3, 1])
    start = copy.deepcopy(net)
    result = Trainer(optimizer="adam", steps=1, progress=False, device="cpu", loss={"causal": {"eps": 2.0, "slabs": 4}}).fit(problem, net, pts)
    sq = {t: v.detach() for t, v in problem.pointwise(start, pts).items()}
    slab = slab_index(pts["pde"]["x"][:, -1], 0.0, 1.0, 4)
    L = torch.stack([sq["pde"][slab == i].mean() for i in range(4)])
    cw = torch.exp(-2.0 * torch.cat([L.new_zeros(1), L.cumsum(0)[:-1]]))
    w = problem.weights
    expected = w["pde"] * (cw * L).mean() + sum(w[t] * v.mean() for t, v in sq.items() if t != "pde")
    assert result.history["loss"][0] == pytest.approx(float(expected), rel=1e-12)
    assert result.history["causal_min_weight"][0] == pytest.approx(float(cw.min()), rel=1e-12)
    assert float(cw.min()) < 1


def test_rad_moves_the_points_to_large_residuals(f64, poisson):
    net, pts = _setup(poisson, [1, 3, 1])
    initial = pts["pde"]["x"].clone()
    result = Trainer(optimizer="adam", steps=6, progress=False, device="cpu",
                     sampler={"adaptive": "rad", "period": 5, "k": 2.0, "c": 0.0, "pool": 2000}).fit(poisson, net, pts)
    moved = result.points["pde"]["x"]
    assert moved.shape == initial.shape and not torch.equal(moved, initial)
    assert len(torch.unique(moved, dim=0)) == len(moved)  # drawn without replacement
    r_moved = poisson.pde_pointwise(net, moved).detach().sqrt().mean()
    r_uniform = poisson.pde_pointwise(net, initial).detach().sqrt().mean()
    assert r_moved > 1.2 * r_uniform  # a uniform redraw of 200 points would give 1 within a few %


def test_warmup_scales_the_first_adam_step(f64, poisson):
    net, pts = _setup(poisson, [1, 3, 1])
    before = [p.detach().clone() for p in net.parameters()]
    Trainer(optimizer="adam", lr=1e-2, steps=1, progress=False, device="cpu", schedule={"warmup": 10}).fit(poisson, net, pts)
    # Adam's first step moves every parameter with a gradient by lr·factor (m/sqrt(v) = ±1), here 1e-2 · 1/10
    largest = max(float((p.detach() - b).abs().max()) for p, b in zip(net.parameters(), before))
    assert largest == pytest.approx(1e-3, rel=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": {"adaptive": "rad", "period": -5}}, "trainer.sampler.period must be an integer >= 1, got -5"),
    ({"sampler": {"adaptive": "random"}}, "trainer.sampler.adaptive must be one of none, rad"),
    ({"loss": {"rba": True, "gamma": 1.0}}, "trainer.loss.gamma"),
    ({"loss": {"causal": {"eps": -1}}}, "trainer.loss.causal.eps"),
    ({"schedule": {"decay": "linear"}}, "trainer.schedule.decay"),
    ({"loss": {"rba": "yes"}}, "trainer.loss.rba must be true or false"),
    ({"sampler": {"pools": 3}}, "trainer.sampler takes adaptive, period, k, c, pool"),
])
def test_bad_settings_fail_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Trainer(steps=10, **kwargs)


def test_techniques_that_do_not_fit_the_problem_are_refused(poisson):
    with pytest.raises(ValueError, match="trainer.loss.causal.eps=1.0 weights time slabs, and poisson1d has no time input"):
        Trainer(steps=10, loss={"causal": {"eps": 1.0}}).check_problem(poisson)
    with pytest.raises(ValueError, match=r"trainer.sampler.pool=100 must be at least problem.n_interior=200"):
        Trainer(steps=10, sampler={"adaptive": "rad", "pool": 100}).check_problem(poisson)
    Trainer(steps=10, loss={"causal": {"eps": 1.0}}).check_problem(Diffusion1D(n_interior=10, n_boundary=4))


def test_carried_adam_moments_are_mapped_like_the_coefficients(f64):
    torch.manual_seed(0)
    net = KAN([2, 3, 1], grid=5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.rand(64, 2) * 2 - 1
    for _ in range(3):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    old = [(layer.coef.detach().clone(), {k: v.clone() for k, v in opt.state[layer.coef].items()}) for layer in net.layers]
    old_base = opt.state[net.layers[0].scale_base]["exp_avg"].clone()
    carried = adam_moments(opt, net, 10)
    net.extend_grid(10)
    new_opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    restore_moments(new_opt, net, *carried)
    for layer, (coef, state), (_, P) in zip(net.layers, old, carried[1]):
        mapped = lambda v, M=P: torch.einsum("ikj,ijo->iko", M, v)  # noqa: E731
        torch.testing.assert_close(layer.coef.detach(), mapped(coef), rtol=1e-12, atol=1e-13)  # the coefficients' map ...
        new_state = new_opt.state[layer.coef]
        torch.testing.assert_close(new_state["exp_avg"], mapped(state["exp_avg"]))  # ... carries the first moments
        torch.testing.assert_close(new_state["exp_avg_sq"], mapped(state["exp_avg_sq"], P.square()))
        assert float(new_state["step"]) == 3
    torch.testing.assert_close(new_opt.state[net.layers[0].scale_base]["exp_avg"], old_base)
    new_opt.zero_grad()
    net(x).square().mean().backward()
    new_opt.step()  # the carried state is one Adam can use
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_carry_changes_training_after_an_extension_only(f64, poisson):
    histories = []
    for state in ("fresh", "carry"):
        net, pts = _setup(poisson, [1, 3, 1])
        t = Trainer(optimizer="adam", steps=12, log_every=1, progress=False, device="cpu", extension_state=state,
                    grid_extension={"at": [6], "grids": [10]})
        histories.append(t.fit(poisson, net, pts).history["loss"])
    assert histories[0][:7] == histories[1][:7] and histories[0][7:] != histories[1][7:]
