"""Sparsity, pruning and symbolic edges inside training and runs; the interpret command line."""
from __future__ import annotations


import numpy as np
import pytest
import sympy as sp
import torch
from hydra import compose, initialize_config_dir

from kanpde import Dirichlet, Fields, Interval, Problem
from kanpde.experiment.configs import config_dir
from kanpde.interpret.__main__ import main as interpret_main
from kanpde.interpret.formula import evaluate, formula
from kanpde.io import read_results
from kanpde.models import KAN
from kanpde.models.functions import LIBRARY
from kanpde.experiment.run import ConfigError, TrainingFailed, run
from kanpde.training.trainer import Trainer


class ExpProblem(Problem):
    """u'' = u on [-1, 1] with u(±1) = e^±1: exact u = e^x."""

    name = "exp1d"
    inputs = ("x",)

    def __init__(self) -> None:
        super().__init__(Interval(-1, 1), [Dirichlet(lambda x: torch.exp(x[:, 0]))], n_interior=200, n_boundary=2)

    def residual(self, f: Fields) -> torch.Tensor:
        return f.d("u", "x", "x") - f["u"]

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=["problem=poisson1d", "model.width=[1,3,1]", "trainer.progress=false",
                                            "plots=false", "trainer.grid_extension.at=[]", "trainer.grid_extension.grids=[]",
                                            *overrides])


@pytest.mark.parametrize("override, message", [
    ("trainer.reg.l1=-1", "trainer.reg.l1"),
    ("+trainer.reg.l2=1", "trainer.reg takes l1, entropy, until, got unknown key"),
    ("trainer.prune_at=5000", "trainer.prune_at=5000 must be below trainer.steps"),
    ("trainer.prune_threshold=-0.1", "trainer.prune_threshold"),
    ("trainer.symbolic.library=[sin,sinh]", "trainer.symbolic.library: unknown symbolic function 'sinh'"),
    ("trainer.symbolic.at=-3", "trainer.symbolic.at"),
    ("interpret.digits=0", "interpret.digits"),
])
def test_bad_interpretation_settings_fail_before_training_naming_the_field(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        run(_cfg("trainer.steps=20", override), tmp_path)
    assert not (tmp_path / "results.h5").exists()


def test_sparsity_pruning_and_symbolic_steps_need_a_kan(tmp_path):
    with pytest.raises(ConfigError, match="trainer.reg needs a KAN model, got MLP"):
        run(_cfg("model=mlp", "model.width=[1,4,1]", "trainer.steps=20", "trainer.reg.l1=0.01"), tmp_path)
    with pytest.raises(ConfigError, match="interpret.activations=true draws a KAN's edges, and the model is MLP"):
        run(_cfg("model=mlp", "model.width=[1,4,1]", "trainer.steps=20", "interpret.activations=true"), tmp_path)
    with pytest.raises(ConfigError, match="trainer.prune_at needs a KAN model, got MLP"):
        run(_cfg("model=mlp", "model.width=[1,4,1]", "trainer.steps=20", "trainer.prune_at=10"), tmp_path)


def test_regularization_is_logged_and_stops_at_until(f64):
    problem = ExpProblem()
    torch.manual_seed(0)
    net = KAN([1, 3, 1], grid=5, bounds=([-1.0], [1.0]))
    trainer = Trainer(steps=30, log_every=1, progress=False, device="cpu", reg={"l1": 0.1, "entropy": 0.05, "until": 20})
    result = trainer.fit(problem, net, problem.sample_points(0))
    reg = np.asarray(result.history["loss_reg"])
    assert (reg[:20] > 0).all() and (reg[20:] == 0).all()
    # the logged loss is the objective: the PDE and boundary terms plus the penalty
    parts = sum(np.asarray(result.history[f"loss_{t}"]) for t in problem.terms) + reg
    np.testing.assert_allclose(result.history["loss"][:1], parts[:1], rtol=1e-12)
    assert "loss_reg" not in Trainer(steps=5, progress=False, device="cpu").fit(problem, net, problem.sample_points(0)).history


def test_pruning_during_training_narrows_the_network_and_training_goes_on(f64):
    problem = ExpProblem()
    torch.manual_seed(0)
    net = KAN([1, 4, 1], grid=5, bounds=([-1.0], [1.0]))
    with torch.no_grad():  # hidden nodes 2 and 3 feed nothing: pruning must drop them
        net.layers[1].coef[2:] = 0
        net.layers[1].scale_base[2:] = 0
        net.layers[1].scale_sp[2:] = 0
    trainer = Trainer(steps=40, progress=False, device="cpu", prune_at=0, prune_threshold=1e-12)
    result = trainer.fit(problem, net, problem.sample_points(0), torch.linspace(-1, 1, 50)[:, None])
    assert result.status == "ok" and result.pruned_width == [1, 2, 1] and net.width == [1, 2, 1]
    assert result.stages["n_params"][0] > result.stages["n_params"][-1] == net.n_params()
    assert result.history["rel_l2"][-1] < result.history["rel_l2"][1]


def test_exp_solution_is_recovered_as_a_formula(f64):
    """A second closed form, e^x, from training: numeric edges, then symbolic ones, then retraining."""
    problem = ExpProblem()
    torch.manual_seed(0)
    net = KAN([1, 1], grid=5, bounds=([-1.0], [1.0]))
    x_eval = torch.linspace(-1, 1, 101)[:, None]
    trainer = Trainer(steps=120, progress=False, device="cpu", symbolic={"at": 80, "library": None})
    result = trainer.fit(problem, net, problem.sample_points(0), x_eval)
    assert [f.name for f in result.symbolic] == ["exp"]
    (expr,) = formula(net, ("x",), digits=4)
    assert sp.simplify(expr - sp.exp(sp.Symbol("x"))) == 0
    u = evaluate([expr], ("x",), x_eval)
    assert np.abs(u - np.exp(x_eval.numpy())).max() < 1e-12


@pytest.mark.slow
def test_a_symbolic_run_writes_formula_table_and_activations(tmp_path):
    out = tmp_path / "run"
    attrs = run(_cfg("model.width=[1,2,1]", "trainer.steps=60",
                     "trainer.prune_at=20", "trainer.prune_threshold=0", "trainer.symbolic.at=40", "interpret.activations=true"), out)
    res = read_results(out / "results.h5")
    assert list(res["attrs"]["pruned_width"]) == [1, 2, 1]
    table = res["symbolic"]
    assert len(table["function"]) == 4 and set(table) == {"layer", "i", "o", "function", "r2", "a", "b", "c", "d"}
    assert all(0 < r2 <= 1 for r2 in table["r2"])
    # the formula alone, evaluated without the network, against the exact solution
    expr = sp.sympify(res["attrs"]["formula"].split("=", 1)[1])
    x = res["eval"]["x"]
    u = sp.lambdify(sp.Symbol("x"), expr, "numpy")(x[:, 0])
    ref = res["eval"]["u_exact"][:, 0]
    assert res["attrs"]["formula_rel_l2"] == pytest.approx(np.linalg.norm(u - ref) / np.linalg.norm(ref), rel=1e-6)
    # every edge is symbolic: each counts its free numbers, c and d plus a and b where the function fits them
    free = [0 if n == "0" else 2 + LIBRARY[n].fit_a + LIBRARY[n].fit_b for n in table["function"]]
    assert attrs["n_params"] == sum(free)
    assert (out / "activations.png").stat().st_size > 0


@pytest.mark.slow
def test_interpret_command_line(tmp_path, capsys):
    kan_dir, mlp_dir = tmp_path / "kan", tmp_path / "mlp"
    run(_cfg("trainer.steps=10"), kan_dir)
    run(_cfg("model=mlp", "model.width=[1,4,1]", "trainer.steps=10"), mlp_dir)
    assert interpret_main([str(kan_dir), "--formula"]) == 0
    printed = capsys.readouterr().out
    assert (kan_dir / "activations.png").is_file() and "u = " in printed and "rel L2" in printed
    assert interpret_main([str(mlp_dir), "--formula"]) == 2
    assert "MLP run; activations and formulas need a KAN" in capsys.readouterr().err
    assert interpret_main([str(tmp_path)]) == 2
    assert "no kanpde run in" in capsys.readouterr().err
    assert interpret_main([str(kan_dir), "--formula", "--library", "sin", "sinh"]) == 2
    assert "'sinh'" in capsys.readouterr().err


def test_a_pruning_that_empties_a_layer_fails_the_run_with_results_written(tmp_path):
    with pytest.raises(TrainingFailed, match=r"trainer.prune_at=5: pruning at threshold 1000.0 removes every node of hidden layer 1"):
        run(_cfg("trainer.steps=20", "trainer.prune_at=5", "trainer.prune_threshold=1000"), tmp_path)
    res = read_results(tmp_path / "results.h5")
    assert res["attrs"]["status"] == "failed" and res["attrs"]["steps"] == 5
    assert list(res["attrs"]["width"]) == [1, 3, 1]  # the network was left as trained


@pytest.mark.slow
def test_symbolic_preset_prunes_and_recovers_sin_sin(tmp_path):
    """The +experiment=symbolic recipe on poisson2d_sin, on a shorter schedule to keep the suite short (2,500
    interior points instead of 10,000; every stage after 200 to 250 steps instead of 300 to 350, 550 steps in
    all instead of 950): sparsity -> pruning to <= 3 hidden nodes -> retraining to rel L2 <= 1e-3 -> symbolic
    edges -> the exact formula."""
    shorter = ["trainer.steps=550", "trainer.reg.until=200", "trainer.prune_at=200", "trainer.grid_extension.at=[230,260]",
               "trainer.symbolic.at=450"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["problem=poisson2d_sin", "+experiment=symbolic", "problem.n_interior=2500", *shorter,
                                           "trainer.progress=false", "plots=false", "interpret.activations=false"])
    run(cfg, tmp_path)
    res = read_results(tmp_path / "results.h5")
    a, stages = res["attrs"], res["stages"]
    assert a["pruned_width"][1] <= 3
    before_symbolic = list(stages["step"]).index(cfg.trainer.symbolic.at)
    assert stages["rel_l2"][before_symbolic] <= 1e-3  # the pruned network, retrained (numeric edges)
    assert a["formula_rel_l2"] <= 1e-6
    expr = sp.sympify(a["formula"].split("=", 1)[1])
    xy = np.random.default_rng(0).uniform(-1, 1, (2000, 2))
    u = sp.lambdify(sp.symbols("x y"), expr, "numpy")(xy[:, 0], xy[:, 1])
    assert np.abs(u - np.sin(np.pi * xy[:, 0]) * np.sin(np.pi * xy[:, 1])).max() <= 1e-5
