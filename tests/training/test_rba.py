"""Residual-based attention (kanpde.training.callbacks.rba): the update rule, and inside training."""
from __future__ import annotations

import copy

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
