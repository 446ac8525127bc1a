"""The techniques together: all off is plain training; bad settings and misfits fail before training."""
from __future__ import annotations

import pytest
from kanpde.problems.heat import Diffusion1D
from kanpde.training.trainer import Trainer

from conftest import setup_kan


def test_every_technique_off_reproduces_plain_training(f64, poisson):
    off = dict(loss={"rba": False, "causal": {"eps": 0.0}}, sampler={"adaptive": "none"},
               schedule={"warmup": 0, "decay": "none"})
    for optimizer in ("adam", "lbfgs"):
        results = []
        for extra in ({}, off):
            net, pts = setup_kan(poisson, [1, 3, 1])
            results.append(Trainer(optimizer=optimizer, steps=15, log_every=1, progress=False, device="cpu", **extra).fit(poisson, net, pts))
        assert results[0].history["loss"] == results[1].history["loss"]


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
