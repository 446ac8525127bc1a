"""Grid extension's Adam-state carry (kanpde.training.callbacks.grid_extension)."""
from __future__ import annotations

import itertools

import pytest
import torch
from kanpde.models import KAN
from kanpde.training.callbacks.grid_extension import (
    adam_moments,
    apply_along,
    project_adam_state,
    restore_moments,
)
from kanpde.training.trainer import Trainer

from conftest import setup_kan


def _loop_apply(P, x, dim):
    batch = x.shape[:dim]
    out = torch.empty(*batch, P.shape[-2], *x.shape[dim + 1:], dtype=x.dtype)
    Pb = P.expand(*batch, *P.shape[-2:])
    for b in itertools.product(*(range(s) for s in batch)):
        xb = x[tuple(b)].reshape(x.shape[dim], -1)
        out[tuple(b)] = (Pb[tuple(b)] @ xb).reshape(P.shape[-2], *x.shape[dim + 1:])
    return out


@pytest.mark.parametrize("x_shape, P_shape, dim", [
    ((3, 8, 2), (3, 12, 8), 1), ((2, 3, 5, 4, 2), (2, 3, 7, 5), 2), ((5, 4), (6, 5), 0),
    ((3, 8, 2), (12, 8), 1), ((2, 3, 5), (3, 4, 5), -1),
])
def test_apply_along_matches_loop(x_shape, P_shape, dim):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*x_shape, generator=g, dtype=torch.float64)
    P = torch.randn(*P_shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(apply_along(P, x, dim), _loop_apply(P, x, dim % x.ndim))


def test_apply_along_bad_arguments():
    x = torch.ones(3, 8, 2)
    with pytest.raises(ValueError, match="^P must have shape"):
        apply_along(torch.ones(3, 12, 7), x, 1)
    with pytest.raises(ValueError, match="^P's batch dimensions"):
        apply_along(torch.ones(4, 12, 8), x, 1)
    with pytest.raises(ValueError, match="^dim must"):
        apply_along(torch.ones(12, 8), x, 3)


def _state(shape, amsgrad=False, seed=2):
    g = torch.Generator().manual_seed(seed)
    s = {"step": torch.tensor(7.0), "exp_avg": torch.randn(*shape, generator=g, dtype=torch.float64),
         "exp_avg_sq": torch.rand(*shape, generator=g, dtype=torch.float64)}
    if amsgrad:
        s["max_exp_avg_sq"] = s["exp_avg_sq"] + 0.1
    return s


def test_project_adam_state_moments():
    state = _state((3, 8, 2), amsgrad=True)
    P = torch.randn(3, 12, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    new = project_adam_state(state, P)
    torch.testing.assert_close(new["exp_avg"], P @ state["exp_avg"])
    torch.testing.assert_close(new["exp_avg_sq"], (P ** 2) @ state["exp_avg_sq"])
    torch.testing.assert_close(new["max_exp_avg_sq"], (P ** 2) @ state["max_exp_avg_sq"])
    assert (new["exp_avg_sq"] >= 0).all() and ((P @ state["exp_avg_sq"]) < 0).any()
    assert new["step"] == 7 and new["step"] is not state["step"]
    eye = project_adam_state(state, torch.eye(8, dtype=torch.float64).expand(3, 8, 8))
    for key in state:
        torch.testing.assert_close(eye[key], state[key])
    assert project_adam_state({}, P) == {}
    with pytest.raises(ValueError, match="^state must hold a tensor 'exp_avg_sq'"):
        project_adam_state({"step": 1, "exp_avg": torch.ones(3, 8, 2)}, P)
    with pytest.raises(ValueError, match="^P must"):
        project_adam_state(state, [[1.0]])


def test_project_real_adam_state():
    torch.manual_seed(4)
    coef = torch.nn.Parameter(torch.randn(3, 8, 2))
    opt = torch.optim.Adam([coef], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (coef.sin() ** 2).sum().backward()
        opt.step()
    P = torch.randn(3, 12, 8)
    state = opt.state[coef]
    new = project_adam_state(state, P, dim=1)
    torch.testing.assert_close(new["exp_avg"], torch.bmm(P, state["exp_avg"]))
    torch.testing.assert_close(new["exp_avg_sq"], torch.bmm(P ** 2, state["exp_avg_sq"]))
    assert float(new["step"]) == 3
    # the projected state drives a fresh optimiser on the re-parametrised coefficients
    new_coef = torch.nn.Parameter(torch.bmm(P, coef.detach()))
    new_opt = torch.optim.Adam([new_coef], lr=1e-2)
    new_opt.state[new_coef] = new
    (new_coef.sin() ** 2).sum().backward()
    new_opt.step()
    assert torch.isfinite(new_coef).all() and float(new_opt.state[new_coef]["step"]) == 4


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
    carried = adam_moments(opt, net, [lambda layer: layer.extend(10)] * len(net.layers))
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
        net, pts = setup_kan(poisson, [1, 3, 1])
        t = Trainer(optimizer="adam", steps=12, log_every=1, progress=False, device="cpu", extension_state=state,
                    grid_extension={"at": [6], "grids": [10]})
        histories.append(t.fit(poisson, net, pts).history["loss"])
    assert histories[0][:7] == histories[1][:7] and histories[0][7:] != histories[1][7:]
