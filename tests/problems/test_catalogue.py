"""The PDE catalogue: every problem's exact solution makes its own residual and conditions vanish,
hard constraints hold exactly, inverse problems learn their unknowns, and the catalogue lists it all."""
from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from kanpde import KAN, Fields, HardConstraint
from kanpde.experiment.catalogue import describe, load_problem, main, problem_configs
from kanpde.experiment.run import build
from kanpde.training.trainer import Trainer

ALL = list(problem_configs())
SMALL = {"n_interior": 300, "n_boundary": 120}


class ExactModule(nn.Module):
    """A problem's exact solution as a parameter-free "model", plus an optional perturbation."""

    def __init__(self, problem, perturb=None):
        super().__init__()
        self.problem, self.perturb = problem, perturb

    def forward(self, x):
        u = self.problem.exact(x)
        return u if self.perturb is None else u + self.perturb(x)


def small(name: str, **overrides):
    cfg = OmegaConf.to_container(OmegaConf.load(problem_configs()[name]))
    cfg.update({k: v for k, v in SMALL.items() if k in cfg})
    cfg.update(overrides)
    return build("problem", cfg)


def with_exact(name: str):
    """The problem with noise-free observations (if it has any) and its unknowns at their true values."""
    noise = {"noise": 0.0} if "noise" in OmegaConf.load(problem_configs()[name]) else {}
    problem = small(name, **noise)
    if problem.exact(problem.domain.sample_interior(2, "uniform", 0)) is None:
        pytest.skip(f"{name} has a reference solution, not a closed form (tests/test_references.py checks it)")
    for key, value in problem.true_unknowns.items():
        with torch.no_grad():
            problem.unknowns[key].fill_(value)
    return problem


def test_catalogue_has_the_issue_problems():
    expected = {"poisson1d", "poisson1d_neumann", "poisson1d_robin", "poisson1d_periodic", "poisson2d", "helmholtz2d",
                "poisson_disk", "poisson_lshape", "diffusion1d", "burgers1d", "allen_cahn1d", "wave1d", "klein_gordon1d",
                "convection_diffusion2d", "kovasznay", "poisson_nd", "inverse_heat1d"}
    assert expected <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_exact_solution_makes_every_term_vanish(name):
    """Plugging the exact solution in as the model (float64, autograd derivatives) zeroes the PDE residual
    and every condition; a small perturbation does not.  This catches formula typos in either."""
    problem = with_exact(name)
    points = problem.sample_points(seed=5)
    losses = problem.losses(ExactModule(problem), points, derivatives="autograd")
    assert set(losses) == set(problem.terms)
    for term, value in losses.items():
        assert float(value.detach()) < 1e-20, f"{name}: term {term} = {float(value):.3e} for the exact solution"
    bump = lambda x: 0.05 * torch.sin(3 * x.sum(dim=1, keepdim=True)).expand(-1, len(problem.outputs))  # noqa: E731
    perturbed = problem.losses(ExactModule(problem, bump), points, derivatives="autograd")
    assert float(perturbed["pde"]) > 1e-6


@pytest.mark.parametrize("name", ALL)
def test_problem_points_lie_where_they_belong(name):
    problem = small(name)
    points = problem.sample_points(seed=2)
    assert problem.domain.inside(points["pde"]["x"]).all()
    for c in problem.conditions:
        x = points[c.name]["x"]
        assert x.dtype == torch.float64 and x.shape[1] == len(problem.inputs)
        kind = type(c).__name__
        if kind in ("Dirichlet", "Neumann", "Robin", "Periodic"):
            assert problem.domain.on_boundary(x).all(), f"{name}: {c.name} points off the boundary"
        elif kind in ("Initial", "InitialRate"):
            assert (x[:, -1] == problem.domain.t0).all()
    x_eval, u_ref = problem.evaluation_set()
    assert problem.domain.inside(x_eval).all()
    assert u_ref.shape == (x_eval.shape[0], len(problem.outputs)) and torch.isfinite(u_ref).all()


VARYING_BOUNDARY = ("kovasznay", "poisson1d", "poisson_nd")  # Dirichlet values given by the exact solution, no own lift
HARD = [n for n in ALL if n not in ("poisson1d_neumann", "poisson1d_robin", "poisson1d_periodic", "poisson_lshape",
                                    *VARYING_BOUNDARY)]


@pytest.mark.parametrize("name", HARD)
def test_hard_constraints_hold_exactly_and_keep_the_fast_derivatives(name, f64):
    """With hard_constraints=true a random network meets the imposed conditions to rounding, the loss
    drops those terms, and the wrapper's forward jets equal nested autograd."""
    problem = small(name, hard_constraints=True)
    assert problem.hard_terms and not set(problem.hard_terms) & set(problem.terms)
    lo, hi = problem.domain.bounds()
    torch.manual_seed(0)
    model = problem.constrain(KAN([len(problem.inputs), 4, len(problem.outputs)], grid=4, bounds=(lo.tolist(), hi.tolist())))
    assert isinstance(model, HardConstraint) and model.n_params() == model.net.n_params()
    for c in problem.conditions:
        if c.name in problem.hard_terms:
            p = c.sample(problem.domain, 200, "uniform", 1)
            r = c.residual(Fields(model, p["x"], problem.inputs, problem.outputs, "autograd"), p)
            assert r.abs().max() < 1e-12, f"{name}: hard {c.name} violated by {float(r.abs().max()):.2e}"
    x = problem.domain.sample_interior(64, "uniform", 3)
    fa = Fields(model, x, problem.inputs, problem.outputs, "autograd")
    ff = Fields(model, x, problem.inputs, problem.outputs, "forward")
    assert ff.backend == "forward"
    for o in problem.outputs:
        for a in problem.inputs:
            for b in problem.inputs:
                ref = fa.d(o, a, b)
                assert torch.allclose(ff.d(o, a, b), ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max() + 1))


def test_hard_constraints_refused_where_nothing_can_be_imposed():
    for name in ("poisson1d_periodic", *VARYING_BOUNDARY):
        with pytest.raises(ValueError, match="hard_constraints.*no constant Dirichlet condition.*needs the problem to define lift"):
            small(name, hard_constraints=True)


@pytest.mark.parametrize("name", [n for n in HARD if n in ("wave1d", "klein_gordon1d", "convection_diffusion2d", "diffusion1d")])
def test_the_lift_does_not_reveal_the_solution(name, f64):
    """Benchmarks give their initial and boundary values as the exact solution: the lift takes the initial
    value on the initial slice only (carried along in time), and a boundary value that varies stays a loss
    term, so a constrained network still has the whole solution to learn."""
    problem = small(name, hard_constraints=True)
    x = problem.domain.sample_interior(50, "uniform", 4)
    start = x.clone()
    start[:, -1] = problem.domain.t0
    torch.testing.assert_close(problem.lift(x), problem.lift(start), rtol=0, atol=0)
    exact = problem.exact(x)
    later = x[:, -1] > problem.domain.t0 + 0.2 * problem.domain.duration
    assert float((problem.lift(x) - exact)[later].abs().max()) > 1e-2


def test_incompatible_lift_is_reported():
    """A problem whose initial value contradicts its constant boundary value must say so rather than train a wrong u."""
    from kanpde import Dirichlet, Initial, Interval, Problem, TimeDomain

    class Clash(Problem):
        inputs = ("x", "t")
        name = "clash"

        def __init__(self):
            super().__init__(TimeDomain(Interval(0, 1), 0, 1), [Dirichlet(1.0), Initial(0.0)], hard_constraints=True)

        def residual(self, f):
            return f.d("u", "t")

    with pytest.raises(ValueError, match="lift .* differs from the boundary value"):
        Clash().constrain(nn.Linear(2, 1))


def test_inverse_problem_learns_its_unknown():
    """With the exact field fixed and noise-free data, training only the unknown recovers kappa = 0.1 from 0.5,
    and the trajectory is logged."""
    problem = small("inverse_heat1d", noise=0.0)
    assert float(problem.unknown("kappa")) == 0.5
    trainer = Trainer(optimizer="lbfgs", steps=15, log_every=1, progress=False, derivatives="autograd")
    res = trainer.fit(problem, ExactModule(problem), problem.sample_points(0))
    traj = res.history["unknown_kappa"]
    assert len(traj) == 15 and abs(traj[-1] - 0.1) < 1e-8
    with pytest.raises(KeyError, match="no unknown 'nu'"):
        problem.unknown("nu")


def test_residual_of_wrong_shape_is_named():
    problem = small("diffusion1d")

    class Bad(type(problem)):
        def residual(self, f):
            return f.d("u", "t").unsqueeze(0)

    bad = Bad(n_interior=50, n_boundary=20)
    with pytest.raises(ValueError, match=r"diffusion1d: the PDE residual must have shape \(50,\).*\(1, 50\)"):
        bad.losses(ExactModule(bad), bad.sample_points(0), "autograd")


@pytest.mark.parametrize("name", ["helmholtz2d", "burgers1d", "kovasznay", "inverse_heat1d"])
def test_describe(name):
    d = describe(load_problem(name))
    assert d["name"] == name and d["inputs"] and d["conditions"]
    if name == "burgers1d":
        assert d["solution"] == "reference" and any(p["value"] == 1.45e-2 for p in d["published"])
    if name == "kovasznay":
        assert d["outputs"] == ["u", "v", "p"]
    if name == "inverse_heat1d":
        assert d["unknowns"] == {"kappa": 0.5}


def test_catalogue_command(capsys):
    assert main(["helmholtz2d", "poisson_disk"]) == 0
    out = capsys.readouterr().out
    assert "helmholtz2d" in out and "1.02e-03" in out and "Rigas et al. 2024" in out and "Disk" in out
    assert main(["--markdown"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + len(ALL)
    assert main(["no_such_problem"]) == 2
    assert "unknown problem(s) no_such_problem" in capsys.readouterr().err


def test_unknowns_validated():
    with pytest.raises(ValueError, match="unknowns.kappa must be a finite"):
        small("inverse_heat1d", kappa0=math.nan)


# every problem with the KAN; the MLP on the shapes that differ (several outputs, 5 inputs, scattered points, unknowns)
END_TO_END = [(n, "kan") for n in ALL] + [(n, "mlp") for n in ("kovasznay", "poisson_nd", "poisson_disk", "inverse_heat1d")]


@pytest.mark.slow
@pytest.mark.parametrize("name, model", END_TO_END)
def test_every_problem_runs_end_to_end(name, model, tmp_path, monkeypatch):
    """`python -m kanpde problem=<name>` with a few steps: it trains, evaluates against its solution,
    writes results.h5 and draws its plots (1-D, 2-D grids, scattered 2-D points, 3+ inputs, several outputs)."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir
    from kanpde.io import read_results
    from kanpde.experiment.run import run

    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path / "cache"))
    small_points = [f"problem.{k}={v}" for k, v in {"n_interior": 64, "n_boundary": 32}.items()]
    width = "model.width=[in,3,out]" if model == "kan" else "model.width=[in,8,out]"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"problem={name}", f"model={model}", width, *small_points, "trainer.steps=3",
                                           "trainer.grid_extension.at=[]", "trainer.grid_extension.grids=[]",
                                           "trainer.progress=false", "threads=1"])
    attrs = run(cfg, tmp_path / "run", problem_name=name)
    saved = read_results(tmp_path / "run" / "results.h5")
    assert saved["attrs"]["status"] == "ok" and math.isfinite(attrs["rel_l2"])
    assert saved["eval"]["u_pred"].shape == saved["eval"]["u_exact"].shape
    assert (tmp_path / "run" / "solution.png").is_file() and (tmp_path / "run" / "history.png").is_file()
    problem = load_problem(name)
    for out in problem.outputs[1:]:
        assert (tmp_path / "run" / f"solution_{out}.png").is_file()
        assert f"rel_l2_{out}" in saved["attrs"]
    for key in problem.unknowns:
        assert len(saved["history"][f"unknown_{key}"]) == len(saved["history"]["step"])
