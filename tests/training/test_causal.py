"""Causal weights (kanpde.training.callbacks.causal): slabs, weights, loss, and inside training."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from kanpde.problems.heat import Diffusion1D
from kanpde.training.callbacks.causal import (
    causal_loss,
    causal_weights,
    slab_index,
    slab_means,
)
from kanpde.training.trainer import Trainer

from conftest import setup_kan


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


def test_causal_weights_shape_the_pde_term(f64):
    problem = Diffusion1D(n_interior=300, n_boundary=40)
    net, pts = setup_kan(problem, [2, 3, 1])
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
