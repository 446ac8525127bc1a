"""Tests for kanpde.pde.metrics: errors of a model with a known perturbation of the exact solution."""
import math
from math import pi

import pytest
import torch
from torch import nn

from kanpde.pde.metrics import errors, errors_against, relative_l2

F64 = torch.float64


def exact_1d(x):
    return torch.sin(pi * x)  # (n, 1) -> (n, 1)


class Perturbed(nn.Module):
    def __init__(self, exact, delta):
        super().__init__()
        self.exact, self.delta = exact, delta

    def forward(self, x):
        return self.exact(x) + self.delta(x)


X1 = torch.linspace(-1, 1, 101, dtype=F64)[:, None]


def test_constant_shift():
    model = Perturbed(exact_1d, lambda x: torch.full_like(x, 0.01))
    e = errors(model, exact_1d, X1)
    assert set(e) == {"rel_l2", "mse", "h1_sq", "max_abs_err", "rel_l2_outputs"}
    assert all(isinstance(v, float) for k, v in e.items() if k != "rel_l2_outputs")
    u_rms = exact_1d(X1).square().mean().sqrt().item()
    assert e["mse"] == pytest.approx(1e-4, rel=1e-9)
    assert e["rel_l2"] == pytest.approx(0.01 / u_rms, rel=1e-9)
    assert e["h1_sq"] == pytest.approx(e["mse"], rel=1e-9)  # gradient unchanged
    assert e["max_abs_err"] == pytest.approx(0.01, rel=1e-9)


def test_linear_shift_adds_gradient_error():
    model = Perturbed(exact_1d, lambda x: 0.01 * x)
    e = errors(model, exact_1d, X1)
    mse = (1e-4 * X1.square()).mean().item()
    assert e["mse"] == pytest.approx(mse, rel=1e-9)
    assert e["h1_sq"] == pytest.approx(mse + 1e-4, rel=1e-9)
    assert e["max_abs_err"] == pytest.approx(0.01, rel=1e-9)  # at x = +-1
    assert e["rel_l2"] == pytest.approx((mse / exact_1d(X1).square().mean().item()) ** 0.5, rel=1e-9)


def test_exact_model_has_zero_error():
    e = errors(Perturbed(exact_1d, lambda x: 0 * x), exact_1d, X1)
    assert e == {"rel_l2": 0.0, "mse": 0.0, "h1_sq": 0.0, "max_abs_err": 0.0, "rel_l2_outputs": [0.0]}


@pytest.mark.parametrize("delta", [lambda x: torch.full_like(x, 0.01), lambda x: 0.01 * x, lambda x: 0.03 * x**2 - 0.02])
def test_chunked_equals_single_chunk(delta):
    model = Perturbed(exact_1d, delta)
    one = errors(model, exact_1d, X1)
    chunked = errors(model, exact_1d, X1, chunk=7)  # 101 = 14 * 7 + 3: uneven last chunk
    for key in one:
        assert chunked[key] == pytest.approx(one[key], rel=1e-12, abs=1e-18)


def exact_2d(x):
    return torch.stack([torch.sin(x[:, 0]) * torch.cos(x[:, 1]), x[:, 0] * x[:, 1]], dim=1)


def test_two_outputs_mean_over_points_and_outputs():
    """delta = (0.02, 0.03 y): mse = (0.02^2 + 0.03^2 mean(y^2)) / 2, gradient error (0, 0.03) on output 1 only."""
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(200, 2, generator=gen, dtype=F64) - 1
    model = Perturbed(exact_2d, lambda z: torch.stack([torch.full_like(z[:, 0], 0.02), 0.03 * z[:, 1]], dim=1))
    e = errors(model, exact_2d, x, chunk=33)
    mse = (0.02**2 + 0.03**2 * x[:, 1].square().mean().item()) / 2
    assert e["mse"] == pytest.approx(mse, rel=1e-9)
    assert e["h1_sq"] == pytest.approx(mse + 0.03**2 / 2, rel=1e-9)
    assert e["max_abs_err"] == pytest.approx(max(0.02, 0.03 * x[:, 1].abs().max().item()), rel=1e-9)
    ref = exact_2d(x)
    assert e["rel_l2"] == pytest.approx((2 * x.shape[0] * mse) ** 0.5 / torch.linalg.vector_norm(ref).item(), rel=1e-9)


def test_errors_leave_no_graph_and_work_under_no_grad():
    model = Perturbed(exact_1d, lambda x: 0.01 * x)
    with torch.no_grad():
        e = errors(model, exact_1d, X1)
    assert e["h1_sq"] == pytest.approx((1e-4 * X1.square()).mean().item() + 1e-4, rel=1e-9)


def test_relative_l2():
    ref = torch.tensor([[3.0], [4.0]], dtype=F64)
    pred = torch.tensor([[3.0], [4.5]], dtype=F64)
    assert relative_l2(pred, ref).item() == pytest.approx(0.5 / 5.0, rel=1e-14)


def test_constant_exact_solution():
    e = errors(Perturbed(lambda x: torch.zeros_like(x), lambda x: 0.01 * x), lambda x: torch.zeros_like(x), X1)
    mse = (1e-4 * X1.square()).mean().item()
    assert e["mse"] == pytest.approx(mse, rel=1e-9)
    assert e["h1_sq"] == pytest.approx(mse + 1e-4, rel=1e-9)


def test_per_output_and_pooled_relative_l2():
    """Two outputs with known errors: per-output rel L2 = 0.01 and 0.1; pooled = sqrt of summed squares over summed norms."""
    x = torch.linspace(0, 1, 101, dtype=torch.float64).unsqueeze(1)

    def exact(z):
        return torch.cat([torch.sin(z) + 2, 3 * torch.cos(z)], dim=1)

    class Model(torch.nn.Module):
        def forward(self, z):
            e = exact(z)
            return e * torch.tensor([1.01, 1.1], dtype=z.dtype)

    e = errors(Model(), exact, x)
    assert e["rel_l2_outputs"] == pytest.approx([0.01, 0.1], rel=1e-12)
    ref = exact(x)
    pooled = ((0.01 * ref[:, 0]).square().sum() + (0.1 * ref[:, 1]).square().sum()) / ref.square().sum()
    assert e["rel_l2"] == pytest.approx(float(pooled.sqrt()), rel=1e-12)
    # the same numbers from reference data (no gradient: h1 is NaN), in chunks
    d = errors_against(Model(), x, ref, chunk=7)
    assert d["rel_l2_outputs"] == pytest.approx([0.01, 0.1], rel=1e-12)
    assert d["rel_l2"] == pytest.approx(e["rel_l2"], rel=1e-12) and d["mse"] == pytest.approx(e["mse"], rel=1e-12)
    assert math.isnan(d["h1_sq"])
    with pytest.raises(ValueError, match="u_ref must have shape"):
        errors_against(Model(), x, ref[:10])
