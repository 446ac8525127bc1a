"""Residual-based attention (kanpde.training.callbacks.rba): the update rule, and inside training."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from kanpde.training.callbacks.rba import rba_update
from kanpde.training.trainer import Trainer

from conftest import setup_kan


def test_rba_two_steps_by_hand():
    w0 = torch.ones(3, dtype=torch.float64)
    w1 = rba_update(w0, torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64), gamma=0.5, eta=0.1)
    torch.testing.assert_close(w1, torch.tensor([0.525, 0.55, 0.6], dtype=torch.float64))
    w2 = rba_update(w1, torch.tensor([0.0, 3.0, -1.0], dtype=torch.float64), gamma=0.5, eta=0.1)
    torch.testing.assert_close(w2, torch.tensor([0.2625, 0.275 + 0.1, 0.3 + 0.1 / 3], dtype=torch.float64))
    torch.testing.assert_close(rba_update(w2, torch.zeros(3, dtype=torch.float64), 0.5, 0.1), 0.5 * w2)
    assert torch.equal(w0, torch.ones(3, dtype=torch.float64))  # out of place
    r = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert not rba_update(torch.ones(3, requires_grad=True), r * 2, 0.9, 0.01).requires_grad


def test_rba_bad_arguments():
    w, r = torch.ones(3), torch.ones(3)
    for kwargs, name in [({"gamma": 1.0, "eta": 0.1}, "gamma"), ({"gamma": -0.1, "eta": 0.1}, "gamma"),
                         ({"gamma": 0.5, "eta": 0.0}, "eta")]:
        with pytest.raises(ValueError, match=rf"^{name} must"):
            rba_update(w, r, **kwargs)
    with pytest.raises(ValueError, match="^residual must have the shape of weights"):
        rba_update(w, torch.ones(4), 0.5, 0.1)


def test_rba_weights_follow_the_update_rule(f64, poisson):
    net, pts = setup_kan(poisson, [1, 3, 1])
    start = copy.deepcopy(net)
    result = Trainer(optimizer="adam", steps=1, progress=False, device="cpu",
                     loss={"rba": True, "gamma": 0.9, "eta": 0.05, "rba_boundary": True}).fit(poisson, net, pts)
    squares = poisson.pointwise(start, pts)
    for term in ("pde", "dirichlet"):
        r = squares[term].detach().sqrt()
        torch.testing.assert_close(result.attention[term], 0.9 * torch.ones_like(r) + 0.05 * r / r.max())


def test_rba_weights_enter_the_objective(f64, poisson):
    """Step 1's objective is sum_t w_t·mean((lam_t·r_t)²) with lam from step 0, by hand from the model after step 0."""
    net, pts = setup_kan(poisson, [1, 3, 1])
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


def test_exponential_potential_by_hand():
    """vRBA's weights: q = exp(beta*(|r| - max|r|)) with beta = ln(step + 2)/(c*max|r|), then lam <- gamma*lam + eta*q."""
    w0 = torch.full((4,), 2.0, dtype=torch.float64)
    r = torch.tensor([1.0, -2.0, 4.0, 0.0], dtype=torch.float64)
    for step, c in [(0, 1.0), (3, 0.5), (998, 2.0)]:
        beta = math.log(step + 2) / (c * 4.0)
        q = torch.tensor([math.exp(beta * (abs(v) - 4.0)) for v in r.tolist()], dtype=torch.float64)
        w1 = rba_update(w0, r, gamma=0.9, eta=0.05, potential="exponential", step=step, c=c)
        torch.testing.assert_close(w1, 0.9 * w0 + 0.05 * q, rtol=1e-14, atol=0)
    # sharper as training goes on: a point at half the largest residual gets (step + 2)^(-1/2) of the largest's weight
    q = [float(rba_update(torch.zeros(2, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64), 0.5, 1.0,
                          potential="exponential", step=s)[0]) for s in (0, 98, 9998)]
    assert q == pytest.approx([2**-0.5, 0.1, 0.01], rel=1e-13)
    # every residual zero: no point stands out, so every point gets the largest weight (the linear potential: none)
    zero = torch.zeros(3, dtype=torch.float64)
    torch.testing.assert_close(rba_update(zero, zero, 0.5, 0.1, potential="exponential", step=7), torch.full((3,), 0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="^potential must be one of linear, exponential, got 'cubic'"):
        rba_update(zero, zero, 0.5, 0.1, potential="cubic")
    with pytest.raises(ValueError, match="^c must"):
        rba_update(zero, zero, 0.5, 0.1, potential="exponential", c=0.0)


def test_exponential_weights_follow_the_update_rule_in_training(f64, poisson):
    """Two Adam steps with vRBA's potential: after step 0 lam = gamma + eta*q(r0; step 0), after step 1
    gamma*lam + eta*q(r1; step 1), with r1 the residual of the model after step 0."""
    net, pts = setup_kan(poisson, [1, 3, 1])
    snapshots = []
    start = copy.deepcopy(net)
    result = Trainer(optimizer="adam", steps=2, log_every=1, progress=False, device="cpu",
                     callbacks=[lambda step, m: snapshots.append(copy.deepcopy(m))],
                     loss={"rba": True, "gamma": 0.9, "eta": 0.05, "rba_potential": "exponential", "rba_c": 0.5}).fit(poisson, net, pts)
    r0 = poisson.pointwise(start, pts)["pde"].detach().sqrt()
    r1 = poisson.pointwise(snapshots[0], pts)["pde"].detach().sqrt()
    lam = 0.9 + 0.05 * torch.exp((r0 / r0.max() - 1) * math.log(2) / 0.5)
    lam = 0.9 * lam + 0.05 * torch.exp((r1 / r1.max() - 1) * math.log(3) / 0.5)
    torch.testing.assert_close(result.attention["pde"], lam, rtol=1e-12, atol=0)


@pytest.mark.parametrize("override, name", [({"rba_potential": "cubic"}, "trainer.loss.rba_potential"),
                                            ({"rba_c": 0}, "trainer.loss.rba_c")])
def test_bad_potential_settings_are_named(override, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        Trainer(loss={"rba": True, **override})
