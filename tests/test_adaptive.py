"""Tests of kanpde.training.adaptive: RAD sampling, RBA weights, causal weighting, LR schedules, Adam state projection."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from kanpde.training.callbacks.causal import causal_loss, causal_weights, slab_index, slab_means
from kanpde.training.callbacks.grid_extension import apply_along, project_adam_state
from kanpde.training.callbacks.lr_schedule import lr_factor
from kanpde.training.callbacks.rad import rad_probabilities, rad_resample
from kanpde.training.callbacks.rba import rba_update


# --------------------------------------------------------------------------- RAD

def _rad_draw(k: float, c: float) -> tuple[np.ndarray, np.ndarray]:
    """(pool (20000,), drawn (2000,)): RAD draw from a uniform pool on [0, 1] with residual r(x) = x."""
    g = torch.Generator().manual_seed(0)
    pool = torch.rand(20_000, 1, generator=g, dtype=torch.float64)
    points, idx = rad_resample(pool, pool[:, 0], 2_000, k, c, generator=g)
    assert points.shape == (2_000, 1)
    assert torch.equal(points, pool[idx])
    assert idx.unique().numel() == 2_000  # without replacement
    return pool[:, 0].numpy(), points[:, 0].numpy()


def _without_replacement_cdf(pool: np.ndarray, weights: np.ndarray, n: int):
    """Expected CDF of n points drawn without replacement from ``pool`` with probabilities ∝ ``weights``.

    Successive sampling includes pool point i with probability ≈ 1 - exp(-θ·w_i), θ fixed by Σ = n
    (Rosén 1997); as n/m -> 0 this tends to the with-replacement CDF.
    """
    order = np.argsort(pool)
    x, w = pool[order], weights[order] / weights.mean()
    theta = optimize.brentq(lambda th: np.sum(-np.expm1(-th * w)) - n, 1e-9, 1e3)
    cdf = np.cumsum(-np.expm1(-theta * w)) / n
    return lambda v: np.interp(v, x, cdf, left=0.0, right=1.0)


def test_rad_density_follows_residual_power():
    pool, x = _rad_draw(k=2.0, c=0.0)  # density ∝ x², CDF x³ (if drawn with replacement)
    # Drawing 10% of the pool without replacement depletes large-x points, shifting the CDF by up to 0.018
    # from x³ (half the KS critical distance at n = 2000): over 200 seeds the without-replacement null
    # fails p > 0.01 for none, x³ for 15%, so x³ is checked at this seed only as the paper's target.
    assert stats.kstest(x, _without_replacement_cdf(pool, pool ** 2, 2_000)).pvalue > 0.01
    assert stats.kstest(x, lambda v: v ** 3).pvalue > 0.01
    assert stats.kstest(x, "uniform").pvalue < 1e-6


def test_rad_k_zero_is_uniform():
    _, x = _rad_draw(k=0.0, c=0.0)
    assert stats.kstest(x, "uniform").pvalue > 0.01


def test_rad_probabilities_by_hand():
    # |r|² = [1, 4, 0, 1], mean 1.5 -> [2/3, 8/3, 0, 2/3] + 1 = [5, 11, 3, 5] / 3, sum 8
    p = rad_probabilities(torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64), k=2, c=1)
    torch.testing.assert_close(p, torch.tensor([5, 11, 3, 5], dtype=torch.float64) / 24)
    uniform = torch.full((3,), 1 / 3)
    torch.testing.assert_close(rad_probabilities(torch.zeros(3), k=2, c=0), uniform)
    torch.testing.assert_close(rad_probabilities(torch.zeros(3), k=2, c=0.5), uniform)
    torch.testing.assert_close(rad_probabilities(torch.tensor([0.0, 1.0, 5.0]), k=0, c=0), uniform)
    # large k must not overflow
    p = rad_probabilities(torch.tensor([1e3, 2e3]), k=200, c=0)
    assert torch.isfinite(p).all() and p[1] == pytest.approx(1.0)


def test_rad_bad_arguments():
    r = torch.ones(4)
    for kwargs, name in [({"k": -1, "c": 0}, "k"), ({"k": 1, "c": -0.1}, "c"), ({"k": math.nan, "c": 0}, "k")]:
        with pytest.raises(ValueError, match=rf"^{name} must"):
            rad_probabilities(r, **kwargs)
    with pytest.raises(ValueError, match="^residual must be finite"):
        rad_probabilities(torch.tensor([1.0, math.nan]), 1, 0)
    with pytest.raises(ValueError, match="^residual must be a 1-D"):
        rad_probabilities(torch.ones(4, 1), 1, 0)
    with pytest.raises(ValueError, match="n=5 points cannot be drawn without replacement from a pool of m=4"):
        rad_resample(torch.rand(4, 2), r, 5, 1, 1)
    with pytest.raises(ValueError, match="^n must"):
        rad_resample(torch.rand(4, 2), r, 0, 1, 1)
    with pytest.raises(ValueError, match="^pool must"):
        rad_resample(torch.rand(4), r, 2, 1, 1)
    with pytest.raises(ValueError, match="^residual must have shape"):
        rad_resample(torch.rand(5, 2), r, 2, 1, 1)
    with pytest.raises(ValueError, match="only 1 of m=4 pool points have nonzero probability"):
        rad_resample(torch.rand(4, 2), torch.tensor([0.0, 0.0, 3.0, 0.0]), 2, 1, 0)


# --------------------------------------------------------------------------- RBA

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


# --------------------------------------------------------------------------- causal

def test_causal_weights_by_hand():
    w = causal_weights(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), eps=0.5)
    torch.testing.assert_close(w, torch.tensor([1.0, math.exp(-0.5), math.exp(-1.5)], dtype=torch.float64))
    assert torch.equal(causal_weights(torch.tensor([4.0, 5.0]), eps=0.0), torch.ones(2))
    with pytest.raises(ValueError, match="^eps must"):
        causal_weights(torch.ones(2), eps=-1.0)


def test_causal_loss_gradient_treats_weights_as_constants():
    values = torch.tensor([1.0, 3.0, 2.0, 4.0, 6.0], dtype=torch.float64, requires_grad=True)
    index = torch.tensor([0, 0, 1, 2, 2])
    loss, w = causal_loss(values, index, slabs=4, eps=0.5)
    # slab means L = [2, 2, 5, 0 (empty)], w = exp(-0.5 · [0, 2, 4, 9])
    L = torch.tensor([2.0, 2.0, 5.0, 0.0], dtype=torch.float64)
    expect_w = torch.exp(-0.5 * torch.tensor([0.0, 2.0, 4.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(w, expect_w)
    assert not w.requires_grad
    torch.testing.assert_close(loss, (expect_w * L).mean())
    loss.backward()
    # d loss / d v_j = w_{s(j)} / (slabs · count_{s(j)})
    counts = torch.tensor([2.0, 2.0, 1.0, 2.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(values.grad, expect_w[index] / (4 * counts))


def test_slab_means_and_errors():
    v = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(slab_means(v, torch.tensor([2, 2, 0]), 3), torch.tensor([3.0, 0.0, 1.5]))
    with pytest.raises(ValueError, match=r"^index must lie in \[0, 2\]"):
        slab_means(v, torch.tensor([0, 3, 1]), 3)
    with pytest.raises(ValueError, match="^index must be a LongTensor"):
        slab_means(v, torch.tensor([0, 1, 1], dtype=torch.int32), 3)
    with pytest.raises(ValueError, match="^slabs must"):
        slab_means(v, torch.tensor([0, 0, 0]), 0)


def test_slab_index_edges():
    t = torch.tensor([0.0, 0.1, 0.25, 0.26, 0.5, 0.75, 0.99, 1.0])
    assert slab_index(t, 0.0, 1.0, 4).tolist() == [0, 0, 1, 1, 2, 3, 3, 3]
    t = torch.tensor([-1.0, -0.5, 0.0, 1.0, 1.5, 2.0], dtype=torch.float64)
    assert slab_index(t, -1.0, 2.0, 3).tolist() == [0, 0, 1, 2, 2, 2]
    tenths = torch.arange(11, dtype=torch.float64) / 10  # edges that are not exactly representable
    assert slab_index(tenths, 0.0, 1.0, 10).tolist() == list(range(10)) + [9]
    assert slab_index(torch.tensor([0.3, 1.0]), 0.0, 1.0, 1).tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"^t must lie in \[t0, t1\] = \[0, 1\]"):
        slab_index(torch.tensor([0.5, 1.0001]), 0.0, 1.0, 4)
    with pytest.raises(ValueError, match=r"^t must lie in \[t0, t1\]"):
        slab_index(torch.tensor([-1e-6]), 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="^t0 must be a finite number, got nan"):
        slab_index(t, math.nan, 1.0, 4)
    with pytest.raises(ValueError, match="^t1 must be > t0"):
        slab_index(t, 1.0, 1.0, 4)
    with pytest.raises(ValueError, match="^slabs must"):
        slab_index(t, -1.0, 2.0, 0)


# --------------------------------------------------------------------------- learning rate

def test_lr_factor_schedules():
    assert [lr_factor(s, warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert lr_factor(0) == 1.0
    assert lr_factor(2, warmup=2, decay="exponential", decay_steps=10, decay_rate=0.5) == 1.0
    assert lr_factor(27, warmup=2, decay="exponential", decay_steps=10, decay_rate=0.5) == pytest.approx(0.5 ** 2.5)
    cos = dict(warmup=10, decay="cosine", total=110, min_factor=0.1)
    assert lr_factor(10, **cos) == pytest.approx(1.0)
    assert lr_factor(60, **cos) == pytest.approx(0.55)
    assert lr_factor(35, **cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(110, **cos) == pytest.approx(0.1)
    assert lr_factor(500, **cos) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs, name", [
    ({"step": -1}, "step"), ({"step": 1.5}, "step"), ({"step": True}, "step"), ({"warmup": -2}, "warmup"),
    ({"decay": "linear"}, "decay"), ({"decay": "exponential", "decay_steps": 0}, "decay_steps"),
    ({"decay": "exponential", "decay_rate": 0.0}, "decay_rate"), ({"decay_rate": 1.5}, "decay_rate"),
    ({"decay": "cosine"}, "total"), ({"decay": "cosine", "total": 5, "warmup": 5}, "total"),
    ({"min_factor": -0.1}, "min_factor"), ({"min_factor": 2.0}, "min_factor"),
])
def test_lr_factor_bad_arguments(kwargs, name):
    kwargs = {"step": 0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{name} must"):
        lr_factor(**kwargs)


# --------------------------------------------------------------------------- Adam state projection

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
