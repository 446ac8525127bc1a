"""Conditions (Robin, periodic, initial value and rate, observations), hard constraints, and problems
defined outside the repository."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from math import pi
from pathlib import Path

import pytest
import torch
from torch import nn

from kanpde import (MLP, Box, Disk, Fields, HardConstraint, Initial, InitialRate, Interval, Observations,
                    Periodic, Problem, Robin, TimeDomain)
from kanpde.pde.constraints import function_jet
from kanpde.io import read_results

ROOT = Path(__file__).resolve().parents[2]


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def fields(fn, x, inputs=("x",)):
    return Fields(Fn(fn), x, inputs, ("u",), "autograd")


def test_robin_residual_matches_hand_computation():
    """u = x² on [0, 2]: at x = 0 (n = −1) a·u + b·u_n = 0; at x = 2 (n = +1) it is 4a + 4b."""
    c = Robin(2.0, 3.0, value=lambda x: 1 + x[:, 0])
    p = c.sample(Interval(0, 2), 2, "uniform", 0)
    r = c.residual(fields(lambda x: x**2, p["x"]), p)
    expected = torch.tensor([0.0 - 1, 2 * 4 + 3 * 4 - 3], dtype=torch.float64)
    assert torch.allclose(r, expected)
    with pytest.raises(ValueError, match="a and b are both zero"):
        Robin(0, 0)


def test_periodic_points_pair_up_across_the_faces():
    domain = TimeDomain(Box([0, -1], [2, 1]), 0, 3)
    c = Periodic("y", n=40)
    c.bind(domain, ("x", "y", "t"))
    p = c.sample(domain, 999, "sobol", 4)
    low, high = p["x"][:40], p["x"][40:]
    assert (low[:, 1] == -1).all() and (high[:, 1] == 1).all()
    assert torch.equal(low[:, [0, 2]], high[:, [0, 2]]) and low[:, 2].std() > 0.5
    # a periodic function in y has zero residual; one that is not, does not
    f = lambda x: torch.sin(pi * x[:, 1:2]) + x[:, :1] * x[:, 2:]  # noqa: E731
    inputs = ("x", "y", "t")
    assert c.residual(fields(f, p["x"], inputs), p).abs().max() < 1e-12
    r = c.residual(fields(lambda x: x[:, 1:2] ** 2 + x[:, 1:2], p["x"], inputs), p)
    assert r.shape == (80,) and torch.allclose(r[:40], torch.full((40,), -2.0, dtype=torch.float64))  # value: (1-1) - (1+1)
    assert torch.allclose(r[40:], torch.full((40,), -4.0, dtype=torch.float64))  # u_y = 2y + 1: (-1) - 3


def test_initial_value_and_rate():
    domain = TimeDomain(Interval(0, 1), 0.5, 2.0)
    u = lambda x: torch.sin(x[:, :1]) * torch.exp(3 * x[:, 1:])  # noqa: E731
    init = Initial(lambda x: torch.sin(x[:, 0]) * torch.exp(torch.tensor(1.5, dtype=torch.float64)))
    rate = InitialRate(lambda x: 3 * torch.sin(x[:, 0]) * torch.exp(torch.tensor(1.5, dtype=torch.float64)))
    for c in (init, rate):
        c.bind(domain, ("x", "t"))
        p = c.sample(domain, 50, "uniform", 1)
        assert (p["x"][:, 1] == 0.5).all() and domain.space.inside(p["x"][:, :1]).all()
        assert c.residual(fields(u, p["x"], ("x", "t")), p).abs().max() < 1e-12
    p = rate.sample(domain, 50, "uniform", 1)
    assert rate.residual(fields(lambda x: u(x) + x[:, 1:] ** 2, p["x"], ("x", "t")), p).abs().min() > 0.99  # + 2t = 1


def test_observations():
    x = torch.tensor([[0.1, 0.2], [0.5, 0.9]])
    c = Observations(x, torch.tensor([1.0, 2.0]))
    c.bind(Box([0, 0], [1, 1]), ("x", "y"))
    p = c.sample(Box([0, 0], [1, 1]), 999, "sobol", 0)
    assert p["x"].shape == (2, 2) and p["x"].dtype == torch.float64
    r = c.residual(fields(lambda z: z.sum(dim=1, keepdim=True), p["x"], ("x", "y")), p)
    assert torch.allclose(r, torch.tensor([0.3 - 1, 1.4 - 2], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"observation point 1 = \[0.5, 1.5\] lies outside"):
        Observations(torch.tensor([[0.1, 0.2], [0.5, 1.5]]), torch.zeros(2)).bind(Box([0, 0], [1, 1]), ("x", "y"))
    with pytest.raises(ValueError, match="must be finite"):
        Observations(x, torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"x must be \(n, dim\) and values \(n,\)"):
        Observations(x, torch.zeros(3))


class _Heat(Problem):
    inputs = ("x", "t")
    name = "heat"

    def residual(self, f):
        return f.d("u", "t") - f.d("u", "x", "x")


@pytest.mark.parametrize("domain, condition, message", [
    (Box([0, 0], [1, 1]), Initial(0.0), "'initial' holds at the initial time, but the domain Box has no time axis"),
    (Box([0, 0], [1, 1]), InitialRate(0.0), "has no time axis"),
    (Disk((0, 0), 1), Periodic("x"), "periodic conditions need a box .* Disk has none"),
    (TimeDomain(Interval(0, 1), 0, 1), Periodic("t"), "'t' is the time axis"),
    (TimeDomain(Interval(0, 1), 0, 1), Periodic("z"), "periodic axis 'z' is not an input"),
])
def test_condition_on_a_boundary_the_domain_lacks(domain, condition, message):
    with pytest.raises(ValueError, match=f"heat: condition .*{message}"):
        _Heat(domain, [condition])


def test_function_jet_matches_autograd(f64):
    fn = lambda x: torch.stack([x[:, 0] ** 2 * torch.sin(x[:, 1]), torch.exp(x[:, 0] * x[:, 1])], dim=1)  # noqa: E731
    x = torch.rand(20, 2)
    pairs = ((0, 0), (0, 1), (1, 1))
    jet = function_jet(fn, x, pairs)
    f = Fields(Fn(fn), x, ("a", "b"), ("u", "v"), "autograd")
    for o, out in enumerate(("u", "v")):
        assert torch.allclose(jet.value[:, o], f[out])
        for a, name in enumerate("ab"):
            assert torch.allclose(jet.first[a, :, o], f.d(out, name))
        for k, (a, b) in enumerate(pairs):
            assert torch.allclose(jet.second[k, :, o], f.d(out, "ab"[a], "ab"[b]))
    assert not jet.value.requires_grad  # fixed functions: no graph kept without a graph to x


def test_hard_constraint_reuses_fixed_jets_only_for_the_same_points(f64):
    calls = []

    def distance(x):
        calls.append(1)
        return (x * (1 - x)).prod(dim=1, keepdim=True)

    model = HardConstraint(MLP([2, 5, 1]), distance, lambda x: x[:, :1])
    x = torch.rand(30, 2)
    j1 = model.forward_jet(x, ((0, 0), (1, 1)))
    n = len(calls)
    model.forward_jet(x, ((0, 0), (1, 1)))
    assert len(calls) == n  # same tensor, same pairs: cached
    x.mul_(0.5)  # changed in place: recomputed
    model.forward_jet(x, ((0, 0), (1, 1)))
    assert len(calls) > n
    assert torch.allclose(model(x), model.forward_jet(x).value)
    assert j1.value.shape == (30, 1)


def _user_module(tmp_path: Path) -> Path:
    pkg = tmp_path / "userpde"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        """A user's own problem, outside the kanpde repository."""
        import torch
        from kanpde import Dirichlet, Interval, Problem

        class Cubic(Problem):
            """u'' = 6x on [0, 1], u(0) = 0, u(1) = 1; exact u = x**3."""
            name = "cubic"
            inputs = ("x",)

            def __init__(self, n_interior=64, n_boundary=2, **kw):
                super().__init__(Interval(0, 1), [Dirichlet(lambda x: x[:, 0] ** 3)], None, n_interior, n_boundary, **kw)

            def residual(self, f):
                return f.d("u", "x", "x") - 6 * f["x"]

            def exact(self, x):
                return x ** 3
    '''))
    conf = tmp_path / "userconf" / "problem"
    conf.mkdir(parents=True)
    (conf / "cubic.yaml").write_text("_target_: userpde.Cubic\nn_interior: 64\nn_boundary: 2\n")
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("route", ["target", "searchpath"])
def test_problem_defined_outside_the_repository_runs(tmp_path, route):
    """A user's module on PYTHONPATH, chosen with problem._target_=... or through a config on Hydra's search path."""
    user = _user_module(tmp_path)
    select = (["problem=poisson1d", "problem._target_=userpde.Cubic", "~problem.bc"] if route == "target"
              else [f"hydra.searchpath=[file://{user / 'userconf'}]", "problem=cubic"])
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "kanpde", *select, "model.width=[in,3,out]", "trainer.steps=60", "trainer.grid_extension.at=[]",
         "trainer.grid_extension.grids=[]", "trainer.progress=false", "plots=false", f"hydra.run.dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(user), str(ROOT)])},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    attrs = read_results(out / "results.h5")["attrs"]
    assert attrs["width"].tolist() == [1, 3, 1] and attrs["rel_l2"] < 0.05
