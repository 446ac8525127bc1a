"""Periodic conditions imposed exactly by the model's input embedding (problem.exact_periodic)."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from kanpde import KAN, MLP, Trainer
from kanpde.experiment.run import ConfigError, resolve_embedding, run
from kanpde.io import load_model, read_results
from kanpde.problems.poisson import Poisson1D
from kanpde.problems.transport import AllenCahn1D, Burgers1D


def test_exact_periodic_drops_the_periodic_term_and_its_points():
    soft, exact = Poisson1D(bc="periodic"), Poisson1D(bc="periodic", exact_periodic=True)
    assert soft.terms == ["pde", "periodic"] and exact.terms == ["pde"]
    assert "periodic" not in exact.sample_points(0)
    assert exact.periodic_axes() == {0: 2.0} and soft.periodic_axes() == {}
    assert AllenCahn1D(exact_periodic=True).periodic_axes() == {0: 2.0}


def test_the_model_must_embed_exactly_the_periodic_axes_with_the_domains_period():
    problem = AllenCahn1D(exact_periodic=True)
    bounds = ([-1.0, 0.0], [1.0, 1.0])
    problem.check_periodic_embedding(KAN([2, 3, 1], bounds=bounds, embedding={"periodic": {0: 1}}))
    with pytest.raises(ValueError, match="problem.exact_periodic: the model does not embed input 'x' periodically"):
        problem.check_periodic_embedding(KAN([2, 3, 1], bounds=bounds))
    with pytest.raises(ValueError, match="model.embedding.periodic: input 't' is not periodic in problem 'allen_cahn1d' "
                                         r"\(it has no Periodic condition on it\)"):
        problem.check_periodic_embedding(MLP([2, 3, 1], bounds=bounds, embedding={"periodic": {0: 1, 1: 1}}))
    with pytest.raises(ValueError, match="model.bounds: .* period is 3, but the domain's period is 2$"):
        problem.check_periodic_embedding(MLP([2, 3, 1], bounds=([-1.0, 0.0], [2.0, 1.0]), embedding={"periodic": {0: 1}}))
    with pytest.raises(ValueError, match="input 'x' is not periodic in problem 'allen_cahn1d' \\(it has exact_periodic=false\\)"):
        AllenCahn1D().check_periodic_embedding(MLP([2, 3, 1], bounds=bounds, embedding={"periodic": {0: 1}}))
    with pytest.raises(ValueError, match="exact_periodic: poisson1d has no Periodic condition"):
        Poisson1D(exact_periodic=True)


def test_the_cli_names_inputs_and_fills_in_the_periodic_axes():
    problem = Burgers1D()
    assert resolve_embedding(problem, {"fourier": {"inputs": ["t"], "features": 4}}) == \
        {"periodic": {}, "fourier": {"inputs": [1], "features": 4}}
    assert resolve_embedding(problem, None) is None
    assert resolve_embedding(AllenCahn1D(exact_periodic=True), {"periodic": 3}) == {"periodic": {0: 3}}
    with pytest.raises(ConfigError, match=r"model.embedding.fourier.inputs: 'y' is not an input of burgers1d; its inputs are \('x', 't'\)"):
        resolve_embedding(problem, {"fourier": {"inputs": ["y"]}})
    with pytest.raises(ConfigError, match="model.embedding.periodic=2: problem burgers1d has no periodic axis imposed exactly"):
        resolve_embedding(problem, {"periodic": 2})


@pytest.mark.parametrize("model", [pytest.param("kan", marks=pytest.mark.slow), "mlp"])
def test_a_run_with_exact_periodicity_trains_without_the_periodic_term(tmp_path, model):
    width, steps = ("[in,6,out]", 300) if model == "kan" else ("[in,12,12,out]", 150)
    cfg = compose_config("problem=poisson1d_periodic", "problem.exact_periodic=true", f"model={model}", f"model.width={width}",
                         f"trainer.steps={steps}", "trainer.progress=false", "plots=false", "problem.n_interior=200")
    run(cfg, tmp_path)
    res = read_results(tmp_path / "results.h5")
    assert res["attrs"]["status"] == "ok" and "loss_periodic" not in res["history"] and "loss_pde" in res["history"]
    assert res["attrs"]["rel_l2"] < 5e-3
    net = load_model(tmp_path / "model.pt")
    assert net.embedding.periodic == {0: 1}
    x = torch.tensor([[-1.0], [1.0]], dtype=torch.float64)
    u = net.to(torch.float64)(x)
    assert abs(float(u[0] - u[1])) < 1e-12


def test_trainer_checks_pass_through_the_wrapped_model_too():
    problem = AllenCahn1D(exact_periodic=True, hard_constraints=True)
    net = MLP([2, 4, 1], bounds=([-1.0, 0.0], [1.0, 1.0]), embedding={"periodic": {0: 1}})
    problem.check_periodic_embedding(net)
    model = problem.constrain(net)
    Trainer(steps=1).check_model(model)
    assert problem.terms == ["pde"]


def test_a_lift_with_a_kink_across_the_periodic_axis_is_measured_and_warned_about(caplog):
    """allen_cahn1d's initial value x²cos(πx) is −1 at both x = ±1, but its slope 2x cos πx − πx² sin πx is 2 at
    x = −1 and −2 at x = 1; convection1d's sin x is smooth across its period."""
    from kanpde.problems.transport import Convection1D

    value, slope = AllenCahn1D(hard_constraints=True, exact_periodic=True).periodic_lift_jumps()["x"]
    assert value < 1e-12 and slope == pytest.approx(4.0, rel=1e-12)
    value, slope = Convection1D(hard_constraints=True, exact_periodic=True).periodic_lift_jumps()["x"]
    assert value < 1e-12 and slope < 1e-12
    assert AllenCahn1D(exact_periodic=True).periodic_lift_jumps() == {}  # no lift without hard constraints
    bounds = ([-1.0, 0.0], [1.0, 1.0])
    with caplog.at_level("WARNING", logger="kanpde"):
        Convection1D(hard_constraints=True, exact_periodic=True).constrain(
            MLP([2, 4, 1], bounds=([0.0, 0.0], [6.283185307179586, 1.0]), embedding={"periodic": {0: 1}}))
        assert not caplog.records
        AllenCahn1D(hard_constraints=True, exact_periodic=True).constrain(MLP([2, 4, 1], bounds=bounds, embedding={"periodic": {0: 1}}))
    [record] = caplog.records
    assert "not smooth across the periodic axis 'x'" in record.getMessage() and "slopes by 4" in record.getMessage()
