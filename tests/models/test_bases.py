"""The KAN edge bases (bspline, chebyshev, rbf): derivatives against autograd, the bases against
reference formulas, equal parameter budgets, grid changes, saving, configs and a training smoke test."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from numpy.polynomial import chebyshev as npcheb
from torch.nn import functional as F

from kanpde import Fields
from kanpde.experiment.configs import config_dir
from kanpde.io import load_model, read_results, save_model
from kanpde.models.jet import all_pairs, silu_derivatives
from kanpde.models import BASES, KAN, ChebyshevKANLayer, RBFKANLayer
from kanpde.experiment.run import ConfigError, build, run
from kanpde.training.trainer import Trainer

F64 = torch.float64
REL = 1e-10
ALL = ("bspline", "chebyshev", "rbf")


@pytest.fixture(autouse=True)
def one_thread():
    """These are small tensors: one torch thread is as fast, and far faster when other jobs share the
    cores (measured 0.5 s against 12 s for the training test on two busy cores)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (absolute where b is all zero)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def points(dim: int, n: int = 150, seed: int = 0) -> torch.Tensor:
    """Random points in [-1.2, 1.2]^dim and a few far outside (tanh saturating, Gaussian tails, no spline)."""
    gen = torch.Generator().manual_seed(seed)
    x = 2.4 * torch.rand(n, dim, generator=gen, dtype=F64) - 1.2
    far = torch.tensor([1.5, -1.9, 2.3, -2.5, 3.0, -4.0], dtype=F64).unsqueeze(1).expand(-1, dim).clone()
    far[:, 1:] = x[: far.shape[0], 1:]
    return torch.cat([x, far])


def nested_autograd(model, x: torch.Tensor, pairs):
    """Value, first partials (dim, batch, out) and the second partials ``pairs`` (len, batch, out) by
    differentiating ``model.forward`` twice, kept differentiable in the parameters."""
    x = x.detach().clone().requires_grad_()
    y = model(x)
    first, second = [], []
    for o in range(y.shape[1]):
        (g,) = torch.autograd.grad(y[:, o].sum(), x, create_graph=True)
        first.append(g.T)  # (dim, batch)
        second.append(torch.stack([torch.autograd.grad(g[:, a].sum(), x, create_graph=True)[0][:, b] for a, b in pairs]))
    return y, torch.stack(first, -1), torch.stack(second, -1)


def jet_loss(value, first, second):
    return value.square().mean() + (2 * first).square().mean() + (3 * second).square().mean()


# --------------------------------------------------------------------------------------------
# derivatives


@pytest.mark.parametrize("basis", ALL)
@pytest.mark.parametrize("width", [[2, 1], [2, 3], [2, 4, 1], [3, 3, 2], [2, 5, 3, 2]])
def test_forward_jet_matches_nested_autograd(basis, width):
    """Value, every first and second partial (mixed included), and the parameter gradient of a loss
    built from them: the forward derivative pass against autograd of forward, depths 1-3, several outputs."""
    torch.manual_seed(1)
    model = KAN(width, grid=5, k=3, init_scale=0.5, basis=basis).double()
    x = points(width[0])
    pairs = all_pairs(width[0], mixed=True)
    jet = model.forward_jet(x, pairs)
    ref = nested_autograd(model, x, pairs)
    for got, want in zip((jet.value, jet.first.expand_as(ref[1]), jet.second), ref):
        assert rel_diff(got, want) <= REL
    grads = []
    for parts in ((jet.value, jet.first, jet.second), ref):
        model.zero_grad(set_to_none=True)
        jet_loss(*parts).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert len(grads[0]) == len(grads[1]) == len(list(model.parameters())) == 3 * (len(width) - 1)
    for a, b in zip(*grads):
        assert rel_diff(a, b) <= REL


@pytest.mark.parametrize("basis", ALL)
def test_third_partials_continue_from_the_jet_by_autograd(basis):
    """With x.requires_grad the jet keeps its graph to x: autograd on its second-partial channels gives
    third partials (as Fields does), equal to three nested autograd passes."""
    torch.manual_seed(3)
    model = KAN([2, 4, 3, 1], grid=5, k=3, init_scale=0.5, basis=basis).double()
    x = points(2).requires_grad_()
    jet = model.forward_jet(x, ((0, 0), (1, 1)))
    uxx, uyy = jet.second[0, :, 0], jet.second[1, :, 0]
    uxxy = torch.autograd.grad(uxx.sum(), x, create_graph=True)[0][:, 1]
    uyyy = torch.autograd.grad(uyy.sum(), x, create_graph=True)[0][:, 1]
    xr = x.detach().clone().requires_grad_()
    g = torch.autograd.grad(model(xr).sum(), xr, create_graph=True)[0]
    gxx = torch.autograd.grad(g[:, 0].sum(), xr, create_graph=True)[0][:, 0]
    gyy = torch.autograd.grad(g[:, 1].sum(), xr, create_graph=True)[0][:, 1]
    ref_xxy = torch.autograd.grad(gxx.sum(), xr, create_graph=True)[0][:, 1]
    ref_yyy = torch.autograd.grad(gyy.sum(), xr, create_graph=True)[0][:, 1]
    assert rel_diff(uxxy, ref_xxy) <= REL and rel_diff(uyyy, ref_yyy) <= REL
    # and the same through Fields, both back ends
    vals = {}
    for backend in ("forward", "autograd"):
        f = Fields(model, x.detach(), ("x", "y"), ("u",), backend)
        vals[backend] = torch.stack([f.d("u", "x", "x", "y"), f.d("u", "y", "y", "y"), f.laplacian("u")]).detach()
    assert rel_diff(vals["forward"], vals["autograd"]) <= REL
    # the graphed pass gives the same jet as the plain one
    plain = model.forward_jet(x.detach(), ((0, 0), (1, 1)))
    for a, b in ((plain.value, jet.value), (plain.first, jet.first), (plain.second, jet.second)):
        assert rel_diff(a, b) <= REL


@pytest.mark.parametrize("cls", [ChebyshevKANLayer, RBFKANLayer])
def test_edge_derivatives_to_third_order_match_autograd(cls):
    torch.manual_seed(2)
    layer = cls(2, 3, grid=4, k=2).double()
    h = points(2).requires_grad_()
    E = layer.edge_derivatives(h, 3)
    assert len(E) == 4 and all(e.shape == (h.shape[0], 2, 3) for e in E)
    assert rel_diff(E[0], layer.edge_splines(h) * layer.scale_sp + F.silu(h).unsqueeze(-1) * layer.scale_base) <= REL
    for d in range(3):
        ref = torch.stack([torch.autograd.grad(E[d][:, :, o].sum(), h, retain_graph=True)[0] for o in range(3)], -1)
        assert rel_diff(E[d + 1], ref) <= REL


# --------------------------------------------------------------------------------------------
# the bases themselves


def test_chebyshev_edges_are_chebyshev_series_in_tanh():
    torch.manual_seed(4)
    layer = ChebyshevKANLayer(2, 3, grid=5, k=3).double()
    x = points(2)
    z = np.tanh(x.numpy())
    coef = layer.coef.detach().numpy()
    assert coef.shape == (2, 8, 3)  # degrees 0 .. G+k-1
    got = layer.edge_splines(x).detach().numpy()
    want = np.stack([np.stack([npcheb.chebval(z[:, i], coef[i, :, o]) for o in range(3)], -1) for i in range(2)], 1)
    assert np.abs(got - want).max() < 1e-13
    # the z-derivatives from the recurrences equal numpy's differentiated series (chain rule through tanh)
    E = [e.detach().numpy() for e in layer.edge_derivatives(x, 3)]
    s = (layer.scale_sp.detach().numpy(), layer.scale_base.detach().numpy())
    zi = z[:, :, None]
    d1, d2, d3 = 1 - zi**2, -2 * zi * (1 - zi**2), (1 - zi**2) * (6 * zi**2 - 2)
    f = [np.stack([np.stack([npcheb.chebval(z[:, i], npcheb.chebder(coef[i, :, o], m)) for o in range(3)], -1)
                   for i in range(2)], 1) for m in range(4)]
    silu = silu_derivatives(x, 3).numpy()[:, :, None, :]  # (batch, in, 1, 4)
    want = [f[0], f[1] * d1, f[2] * d1**2 + f[1] * d2, f[3] * d1**3 + 3 * f[2] * d1 * d2 + f[1] * d3]
    for d in range(4):
        assert np.abs(E[d] - (s[0] * want[d] + s[1] * silu[..., d])).max() < 1e-12
    x_out = torch.tensor([[3.0, -2.0]], dtype=F64)
    y = layer(x_out)
    ref = sum(F.silu(x_out[:, i : i + 1]) * layer.scale_base[i] + layer.scale_sp[i] * torch.tensor(
        [npcheb.chebval(np.tanh(x_out[0, i].item()), coef[i, :, o]) for o in range(3)], dtype=F64) for i in range(2))
    assert rel_diff(y, ref) < 1e-13


def test_rbf_edges_are_gaussians_on_uniform_centres(f64):
    torch.manual_seed(5)
    G, k = 5, 3
    layer = RBFKANLayer(2, 3, grid=G, k=k, grid_range=(-0.5, 1.5)).double()
    with torch.no_grad():
        layer.scale_sp.copy_(torch.rand(2, 3, dtype=F64) + 0.5)
    x = 3 * torch.rand(60, 2, dtype=F64) - 1
    centres = torch.linspace(-0.5, 1.5, G + k, dtype=F64)  # both ends included
    w = 2.0 / (G + k - 1)  # the centre spacing
    expected = torch.zeros(60, 3, dtype=F64)
    for i in range(2):
        B = torch.exp(-(((x[:, i : i + 1] - centres) / w) ** 2))
        expected += layer.scale_base[i] * F.silu(x[:, i : i + 1]) + layer.scale_sp[i] * (B @ layer.coef[i])
    assert rel_diff(layer(x), expected) < 1e-13
    lo, hi = layer.grid_ranges()
    assert torch.allclose(lo, torch.full((2,), -0.5, dtype=F64)) and torch.allclose(hi, torch.full((2,), 1.5, dtype=F64), atol=1e-14)


# --------------------------------------------------------------------------------------------
# parameter budgets


@pytest.mark.parametrize("width,G,k", [([2, 10, 1], 5, 3), ([2, 3, 1], 7, 2), ([4, 2, 3, 1], 3, 1), ([1, 1], 20, 5)])
def test_n_params_equal_across_bases_and_to_the_hand_count(width, G, k):
    expected = sum(a * b * (G + k + 2) for a, b in zip(width[:-1], width[1:]))
    counts = {basis: KAN(width, grid=G, k=k, basis=basis).n_params() for basis in ALL}
    assert counts == {basis: expected for basis in ALL}
    for basis in ALL:
        m = KAN(width, grid=G, k=k, basis=basis)
        m.extend_grid(2 * G)
        assert m.n_params() == sum(a * b * (2 * G + k + 2) for a, b in zip(width[:-1], width[1:]))
        assert m.grid == 2 * G


def test_every_basis_draws_the_same_initial_parameters():
    """Same seed, same initial coefficients and scales for every basis (a fair comparison starts alike)."""
    states = {}
    for basis in ALL:
        torch.manual_seed(0)
        states[basis] = [p.detach().clone() for p in KAN([2, 3, 1], basis=basis).parameters()]
    for basis in ALL[1:]:
        assert all(torch.equal(a, b) for a, b in zip(states["bspline"], states[basis]))


# --------------------------------------------------------------------------------------------
# grid extension and update


def _keep_hidden_in_range(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.coef.copy_(0.3 * (2 * torch.rand(layer.coef.shape, generator=gen, dtype=F64) - 1))
            layer.scale_base.copy_(0.2 * (2 * torch.rand(layer.scale_base.shape, generator=gen, dtype=F64) - 1))


@pytest.mark.parametrize("new_grid", [6, 10, 20])
def test_chebyshev_extension_keeps_the_function_exactly(new_grid):
    torch.manual_seed(0)
    m = KAN([2, 3, 2, 1], grid=5, k=3, init_scale=0.5, basis="chebyshev").double()
    x = points(2)
    y0 = m(x).detach()
    lap0 = Fields(m, x, ("x", "y"), ("u",)).laplacian("u").detach()
    old = [layer.coef.detach().clone() for layer in m.layers]
    m.extend_grid(new_grid)
    assert m.grid == new_grid
    for layer, c in zip(m.layers, old):
        assert layer.coef.shape == (layer.in_features, new_grid + 3, layer.out_features)
        assert isinstance(layer.coef, torch.nn.Parameter) and layer.coef.requires_grad
        assert torch.equal(layer.coef[:, :8], c) and not layer.coef[:, 8:].any()
    assert rel_diff(m(x).detach(), y0) <= 1e-12
    assert rel_diff(Fields(m, x, ("x", "y"), ("u",)).laplacian("u").detach(), lap0) <= 1e-12


# RBF refits change the function visibly.  Measured over seeds 0-19 ([2, 3, 1], inputs on [-1, 1]^2,
# hidden activations inside their range), relative to max |output|: extension G = 5 -> 10 or 20,
# worst max change 7.9e-2 and worst RMS change 8.4e-3; update_grid, 8.5e-2 and 1.7e-2.  The
# largest changes sit at the ends of a range.  Gaussians of one width do not span those of another:
# with width = spacing (FastKAN's choice) a wider Gaussian is a sum of narrower ones only up to a
# quadrature error of order exp(-pi² (1 - (h'/h)²)) ~ 1e-3 of the coefficients inside the range,
# and much worse within a spacing of its ends, where the new basis has no centres beyond.  (The
# B-spline refinement is exact; the Chebyshev extension is exact.)  The tolerances leave a factor ~2.
RBF_REFIT_MAX, RBF_REFIT_RMS = 0.15, 0.03


@pytest.mark.parametrize("new_grid", [10, 20])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rbf_extension_keeps_the_function_closely(new_grid, seed):
    torch.manual_seed(seed)
    m = KAN([2, 3, 1], grid=5, k=3, basis="rbf").double()
    _keep_hidden_in_range(m, seed)
    gen = torch.Generator().manual_seed(10 + seed)
    x = 2 * torch.rand(2000, 2, generator=gen, dtype=F64) - 1
    assert m.layer_inputs(x)[1].abs().max() < 1  # the hidden layer only sees its range
    y0 = m(x).detach()
    assert y0.std() > 1e-2
    m.extend_grid(new_grid)
    assert m.grid == new_grid and all(layer.coef.shape[1] == new_grid + 3 for layer in m.layers)
    for layer in m.layers:
        lo, hi = layer.grid_ranges()
        assert torch.allclose(lo, torch.full_like(lo, -1.0), atol=1e-14) and torch.allclose(hi, torch.full_like(hi, 1.0), atol=1e-14)
    err = m(x).detach() - y0
    scale = y0.abs().max()
    assert err.abs().max() / scale < RBF_REFIT_MAX
    assert err.square().mean().sqrt() / scale < RBF_REFIT_RMS


def test_update_grid_is_a_no_op_for_chebyshev_and_moves_rbf_centres():
    torch.manual_seed(0)
    x = 2 * torch.rand(1000, 2, dtype=F64) - 1
    cheb = KAN([2, 3, 1], grid=5, basis="chebyshev").double()
    before = copy.deepcopy(cheb.state_dict())
    cheb.update_grid(x)
    assert all(torch.equal(before[key], value) for key, value in cheb.state_dict().items())
    with pytest.raises(ValueError, match="no grid range"):
        cheb.layers[0].refit(5, torch.zeros(2), torch.ones(2))

    rbf = KAN([2, 3, 1], grid=5, basis="rbf").double()
    _keep_hidden_in_range(rbf, 3)
    h = rbf.layer_inputs(x)[1]
    hmin, hmax = h.min(0).values, h.max(0).values
    assert ((hmax - hmin) < 1.5).all()  # the range must move
    y0 = rbf(x).detach()
    rbf.update_grid(x, margin=0.01)
    lo, hi = rbf.layers[1].grid_ranges()
    pad = 0.01 * (hmax - hmin)
    assert torch.allclose(lo, hmin - pad, atol=1e-12) and torch.allclose(hi, hmax + pad, atol=1e-12)
    lo0, hi0 = rbf.layers[0].grid_ranges()
    assert torch.equal(lo0, torch.full((2,), -1.0, dtype=F64)) and torch.allclose(hi0, torch.full((2,), 1.0, dtype=F64))
    assert rbf.grid == 5
    err = rbf(x).detach() - y0
    assert err.abs().max() / y0.abs().max() < RBF_REFIT_MAX and err.square().mean().sqrt() / y0.abs().max() < RBF_REFIT_RMS


# --------------------------------------------------------------------------------------------
# saving, configs, errors


@pytest.mark.parametrize("basis", ALL)
def test_save_and_load_round_trip(basis, tmp_path):
    torch.manual_seed(0)
    m = KAN([2, 4, 1], grid=3, k=3, bounds=([0.0, -2.0], [1.0, 2.0]), basis=basis).double()
    x = torch.rand(200, 2, dtype=F64) * torch.tensor([1.0, 4.0], dtype=F64) + torch.tensor([0.0, -2.0], dtype=F64)
    m.update_grid(x)
    m.extend_grid(6)
    assert m.config()["basis"] == basis and m.config()["grid"] == 6
    save_model(tmp_path / "model.pt", m)
    m2 = load_model(tmp_path / "model.pt")
    assert isinstance(m2, KAN) and m2.basis == basis and m2.grid == 6
    assert all(type(a) is type(b) for a, b in zip(m.layers, m2.layers))
    assert torch.equal(m2(x), m(x))
    pairs = ((0, 0), (0, 1), (1, 1))
    j1, j2 = m.forward_jet(x, pairs), m2.forward_jet(x, pairs)
    assert torch.equal(j1.value, j2.value) and torch.equal(j1.first, j2.first) and torch.equal(j1.second, j2.second)


def test_unknown_basis_names_the_argument_and_the_choices():
    with pytest.raises(ValueError, match=r"^basis\b") as err:
        KAN([2, 3, 1], basis="fourier")
    assert all(name in str(err.value) for name in ALL) and "fourier" in str(err.value)
    assert set(BASES) == set(ALL)


def _model_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=["problem=poisson1d", "model.width=[1,3,1]", *overrides]).model


def test_hydra_config_selects_the_basis():
    assert _model_cfg().basis == "bspline"
    for basis in ALL:
        model = build("model", _model_cfg(f"model.basis={basis}"))
        assert isinstance(model, KAN) and model.basis == basis and isinstance(model.layers[0], BASES[basis])
    with pytest.raises(ConfigError, match=r"^model\.basis\b"):
        build("model", _model_cfg("model.basis=fourier"))


# --------------------------------------------------------------------------------------------
# training smoke test


@pytest.mark.parametrize("basis", ["chebyshev", "rbf"])
def test_fits_a_sine(basis):
    """300 Adam steps on [1, 5, 1] take the MSE on sin(pi x) from about 0.5 to below 2e-4 (measured
    2e-5 and 1e-5).  With the basis coefficients frozen (as if they got no gradient) the same run
    stays above it (measured 2e-3 and 6e-3), so the threshold tells a working gradient apart."""
    x = torch.linspace(-1, 1, 201, dtype=F64).unsqueeze(1)
    y = torch.sin(torch.pi * x)

    def fit(train_coef: bool) -> float:
        torch.manual_seed(0)
        m = KAN([1, 5, 1], grid=5, k=3, basis=basis).double()
        params = [p for name, p in m.named_parameters() if train_coef or not name.endswith("coef")]
        opt = torch.optim.Adam(params, lr=0.02)
        for _ in range(300):
            opt.zero_grad()
            loss = (m(x) - y).square().mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return (m(x) - y).square().mean().item()

    assert fit(train_coef=True) < 2e-4
    assert fit(train_coef=False) > 2e-4


# --------------------------------------------------------------------------------------------
# the trainer's grid-extension schedule


def test_schedule_notes_know_which_extensions_keep_the_function():
    trainer = Trainer(grid_extension={"at": [5, 10], "grids": [8, 16]})
    assert KAN([1, 3, 1], grid=4).extension_is_exact(4, 8) and not KAN([1, 3, 1], grid=4).extension_is_exact(4, 6)
    assert trainer.schedule_notes(KAN([1, 3, 1], grid=4, basis="chebyshev")) == []  # 4 -> 8 -> 16
    assert trainer.schedule_notes(KAN([1, 3, 1], grid=5, basis="chebyshev")) == []  # 5 -> 8 -> 16: still exact
    notes = trainer.schedule_notes(KAN([1, 3, 1], grid=4, basis="rbf"))  # refinements, but Gaussians are refitted
    assert len(notes) == 2 and "4 -> 8 at step 5 refits the rbf edges by least squares" in notes[0]


@pytest.mark.parametrize("basis", ["chebyshev", "rbf"])
def test_a_run_extends_the_grid_and_saves_the_model(basis, tmp_path):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["problem=poisson1d", "model.width=[1,3,1]", "trainer.progress=false", "plots=false",
                                           f"model.basis={basis}", "trainer.steps=12", "trainer.grid_extension.at=[6]",
                                           "trainer.grid_extension.grids=[10]", "trainer.grid_update=extension"])
    summary = run(cfg, tmp_path)
    assert np.isfinite(summary["rel_l2"])
    model = load_model(tmp_path / "model.pt")
    assert model.basis == basis and model.grid == 10
    attrs = read_results(tmp_path / "results.h5")["attrs"]
    assert attrs["basis"] == basis and attrs["family"] == f"kan-{basis}"  # comparisons keep the bases apart
