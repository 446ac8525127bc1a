"""Loss balancing (trainer.loss.balance): gradient-norm and NTK weights against hand computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kanpde import MLP, Trainer
from kanpde.problems.poisson import Poisson1D
from kanpde.training.callbacks.balance import grad_norm_weights, ntk_weights


def _setup(n_interior=30):
    problem = Poisson1D(n_interior=n_interior)
    torch.manual_seed(0)
    model = MLP([1, 6, 6, 1], bounds=([-1.0], [1.0])).double()
    points = {t: {k: v.double() for k, v in p.items()} for t, p in problem.sample_points(0).items()}
    return problem, model, points


def _flat_grad(value, model):
    params = list(model.parameters())
    grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)  # u'' does not see the output bias
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])


def test_grad_norm_weights_match_a_hand_computation(f64):
    problem, model, points = _setup()
    x = points["pde"]["x"].clone().requires_grad_(True)
    u = model(x)
    du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]
    d2u = torch.autograd.grad(du.sum(), x, create_graph=True)[0]
    xs = x[:, 0]
    pde = (d2u[:, 0] + torch.pi**2 * torch.sin(torch.pi * xs) - 6 * xs).square().mean()
    xb = points["dirichlet"]["x"]
    bc = (model(xb)[:, 0] - problem.exact(xb)[:, 0]).square().mean()
    norms = {"pde": _flat_grad(pde, model).norm(), "dirichlet": _flat_grad(bc, model).norm()}
    total = sum(norms.values())
    weights = grad_norm_weights(problem, model, points, list(model.parameters()))
    for t in norms:
        assert weights[t] == pytest.approx(float(total / norms[t]), rel=1e-10)


def test_ntk_weights_on_every_point_match_the_per_point_kernel_trace(f64):
    problem, model, points = _setup(n_interior=12)
    traces = {}
    for term in ("pde", "dirichlet"):
        x_all = points[term]["x"]
        total = 0.0
        for i in range(x_all.shape[0]):
            one = {term: {"x": x_all[i: i + 1]}, **{t: p for t, p in points.items() if t != term}}
            r = problem.pointwise(model, one, "autograd")[term].sqrt()[0]
            total += float(_flat_grad(r, model).square().sum())
        traces[term] = total / x_all.shape[0]
    weights = ntk_weights(problem, model, points, list(model.parameters()), n_points=100)
    s = sum(traces.values())
    for t in traces:
        assert weights[t] == pytest.approx(s / traces[t], rel=1e-9)


@pytest.mark.parametrize("balance", ["grad_norm", "ntk"])
def test_the_callback_weights_the_terms_and_records_them(f64, balance):
    problem, model, points = _setup()
    expected = (grad_norm_weights(problem, model, points, list(model.parameters())) if balance == "grad_norm" else None)
    trainer = Trainer(optimizer="adam", steps=12, lr=1e-2, log_every=1, progress=False,
                      loss={"balance": balance, "balance_period": 5, "momentum": 0.5})
    result = trainer.fit(problem, model, points)
    h = result.history
    assert {"weight_pde", "weight_dirichlet"} <= set(h)
    if expected is not None:  # the first update takes the new weights as they are
        assert h["weight_pde"][0] == pytest.approx(expected["pde"], rel=1e-12)
    # the weights change only at steps 0, 5, 10, each time halfway to the new value
    w = np.asarray(h["weight_pde"])
    assert np.all(w[1:5] == w[0]) and np.all(w[6:10] == w[5]) and w[5] != w[0]
    # each weight is sum/own, so their reciprocals add up to one
    first = 1 / np.asarray(h["weight_pde"][0]) + 1 / np.asarray(h["weight_dirichlet"][0])
    assert first == pytest.approx(1.0, rel=1e-12)


def test_balance_off_is_plain_training_and_bad_settings_name_the_field(f64):
    runs = []
    for settings in ({}, {"loss": {"balance": "none"}}):
        problem, model, points = _setup()
        runs.append(Trainer(optimizer="adam", steps=6, log_every=1, progress=False, **settings).fit(problem, model, points).history)
    assert runs[0].keys() == runs[1].keys()
    np.testing.assert_array_equal(runs[0]["loss"], runs[1]["loss"])
    with pytest.raises(ValueError, match="trainer.loss.balance must be one of"):
        Trainer(loss={"balance": "gradnorm"})
    with pytest.raises(ValueError, match="trainer.loss.momentum"):
        Trainer(loss={"balance": "ntk", "momentum": 1.0})
    problem = Poisson1D(bc="periodic", exact_periodic=True)
    with pytest.raises(ValueError, match=r"trainer.loss.balance=grad_norm balances loss terms, and poisson1d_periodic has only \['pde'\]"):
        Trainer(loss={"balance": "grad_norm"}).check_problem(problem)


def test_ntk_draws_a_periodic_conditions_points_as_pairs():
    from kanpde.training.callbacks.balance import _subsample

    x = torch.arange(40.0).reshape(20, 2)  # rows i and i + 10 are a pair
    p = _subsample({"x": x}, 6, True, torch.Generator().manual_seed(0))["x"]
    assert p.shape == (6, 2)
    torch.testing.assert_close(p[3:] - p[:3], torch.full((3, 2), 20.0))
    assert _subsample({"x": x}, 6, False, torch.Generator().manual_seed(0))["x"].shape == (6, 2)
    assert _subsample({"x": x}, 50, True, None)["x"] is x
