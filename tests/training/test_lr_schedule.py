"""Adam's learning-rate schedule (kanpde.training.callbacks.lr_schedule)."""
from __future__ import annotations

import math

import pytest
from kanpde.training.callbacks.lr_schedule import lr_factor
from kanpde.training.trainer import Trainer

from conftest import setup_kan


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


def test_warmup_scales_the_first_adam_step(f64, poisson):
    net, pts = setup_kan(poisson, [1, 3, 1])
    before = [p.detach().clone() for p in net.parameters()]
    Trainer(optimizer="adam", lr=1e-2, steps=1, progress=False, device="cpu", schedule={"warmup": 10}).fit(poisson, net, pts)
    # Adam's first step moves every parameter with a gradient by lr·factor (m/sqrt(v) = ±1), here 1e-2 · 1/10
    largest = max(float((p.detach() - b).abs().max()) for p, b in zip(net.parameters(), before))
    assert largest == pytest.approx(1e-3, rel=1e-6)
