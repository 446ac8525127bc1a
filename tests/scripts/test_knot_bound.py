"""scripts/knot_bound.py: the least-squares tensor-product fit, the knot parametrisation, the optimiser and de Boor's gain."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.special import gamma

from conftest import load_script


@pytest.fixture(scope="module")
def bound():
    return load_script("knot_bound")


def test_knots_stay_ordered_with_the_floor_and_pad_like_the_end_cells(bound):
    t = bound.knots_of(torch.tensor([3.0, -5.0, 0.0, 8.0], dtype=torch.float64), -1.0, 1.0, 0.05)
    assert t[0] == -1.0 and t[-1] == pytest.approx(1.0, abs=1e-15)
    assert float(t.diff().min()) >= 0.05 - 1e-15
    p = bound.padded(torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(p[:3], torch.tensor([-0.3, -0.2, -0.1], dtype=torch.float64))
    assert torch.allclose(p[-3:], torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64))


def test_fit_error_is_zero_in_the_spline_space_and_matches_a_direct_least_squares_fit(bound):
    a = torch.linspace(-1, 1, 41, dtype=torch.float64)
    b = torch.linspace(0, 1, 31, dtype=torch.float64)
    t = bound.knots_of(torch.zeros(4, dtype=torch.float64), -1.0, 1.0, 0.0)
    s = bound.knots_of(torch.zeros(3, dtype=torch.float64), 0.0, 1.0, 0.0)
    cubic = (a**3 - a)[:, None] * (1 + b**2)[None, :]  # cubic in each axis: in the space
    assert float(bound.fit_error(a, b, cubic, t, s)) < 1e-12
    U = torch.exp(a)[:, None] * torch.sin(3 * b)[None, :] + torch.abs(a - 0.3)[:, None]
    Ba = bound.knot_basis(a[:, None], bound.padded(t)[None], 3)[:, 0]
    Bb = bound.knot_basis(b[:, None], bound.padded(s)[None], 3)[:, 0]
    design = torch.einsum("im,jn->ijmn", Ba, Bb).reshape(len(a) * len(b), -1)
    coef = torch.linalg.lstsq(design, U.reshape(-1, 1)).solution
    direct = torch.linalg.norm(design @ coef - U.reshape(-1, 1)) / torch.linalg.norm(U)
    assert float(bound.fit_error(a, b, U, t, s)) == pytest.approx(float(direct), rel=1e-9)


def test_optimised_knots_go_to_a_kink_and_beat_uniform_ones(bound):
    a = torch.linspace(-1, 1, 101, dtype=torch.float64)
    b = torch.linspace(0, 1, 16, dtype=torch.float64)
    U = torch.abs(a - 0.3)[:, None] * (1 + b)[None, :]
    uniform, best, ta, _ = bound.optimise(a, b, U, 6, 50)
    assert best < 0.2 * uniform
    nearest = float((ta - 0.3).abs().min())
    assert nearest < 0.02  # a knot moves onto the kink (a uniform knot is 0.033 away)


def test_de_boor_gain_matches_its_closed_form(bound):
    def mean_abs_sin(p: float) -> float:  # E|sin|^p = Gamma((p + 1)/2) / (sqrt(pi) Gamma(p/2 + 1))
        return gamma((p + 1) / 2) / (math.sqrt(math.pi) * gamma(p / 2 + 1))

    expected = mean_abs_sin(2 / 9) ** 4.5 / math.sqrt(mean_abs_sin(2))
    assert bound.de_boor_gain(1.0) == pytest.approx(expected, rel=1e-4)


def test_solution_grid_reads_the_exact_solution_as_a_grid(bound):
    a, b, U = bound.solution_grid("helmholtz2d")
    assert U.shape == (len(a), len(b)) and not bool(torch.isnan(U).any())
    assert torch.allclose(U, torch.sin(math.pi * a)[:, None] * torch.sin(4 * math.pi * b)[None, :], atol=1e-12)


def test_training_builds_the_run_the_cli_builds_and_refuses_embedded_inputs(bound, tmp_path):
    from conftest import compose_config, load_script
    from kanpde.experiment.run import run

    study = load_script("knots_study")
    args = study.overrides("helmholtz2d", "uniform", [2, 10, 1], 6, 4, 250, 1, "ssbroyden")
    cli = run(compose_config(*args), tmp_path)["rel_l2"]
    assert bound.train("helmholtz2d", 6, 1, None, steps=4) == pytest.approx(cli, rel=1e-12)
    knots = (torch.linspace(-1, 1, 7, dtype=torch.float64) ** 3, torch.linspace(-1, 1, 7, dtype=torch.float64))
    assert bound.train("helmholtz2d", 6, 1, knots, steps=4) != pytest.approx(cli, rel=1e-6)  # the knots do reach the model
    with pytest.raises(ValueError, match="allen_cahn1d: the model embeds its inputs"):
        bound.train("allen_cahn1d", 6, 0, knots, preset=True, steps=1)


def test_training_options_without_training_are_refused(bound, capsys):
    with pytest.raises(SystemExit):
        bound.main(["--problems", "helmholtz2d", "--grids", "5", "--preset"])
    assert "--preset, --steps and overrides after -- apply to training runs" in capsys.readouterr().err
