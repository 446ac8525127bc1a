"""Tests for kanpde.models.kan (KAN, KANLayer) and kanpde.models.mlp (MLP)."""

import pytest
import torch
from torch.nn import functional as F

from kanpde import Fields
from kanpde.models import KAN, MLP, KANLayer
from kanpde.models.basis import cox_de_boor_basis


def _random_coefs(model, seed=0, amp=0.4, base=0.2):
    """Non-trivial random coefficients small enough that hidden activations stay inside [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.coef.copy_(amp * (2 * torch.rand(layer.coef.shape, generator=gen, dtype=torch.float64) - 1))
            layer.scale_base.copy_(base * (2 * torch.rand(layer.scale_base.shape, generator=gen, dtype=torch.float64) - 1))


def _smooth_coefs(model, seed=0):
    """Coefficients sampled from smooth functions (sin) at the basis centres: a smooth spline."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            G, k = layer.grid, layer.k
            centres = layer.grid_lo[:, None] + (torch.arange(G + k) - (k - 1) / 2)[None] * layer.grid_h[:, None]
            phase = 6 * torch.rand(layer.in_features, 1, layer.out_features, generator=gen, dtype=torch.float64)
            freq = 0.5 + torch.rand(layer.in_features, 1, layer.out_features, generator=gen, dtype=torch.float64)
            layer.coef.copy_(0.4 * torch.sin(freq * centres[:, :, None] + phase))
            layer.scale_base.copy_(0.2 * (2 * torch.rand(layer.scale_base.shape, generator=gen, dtype=torch.float64) - 1))


def _inputs(n, d, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return 2 * torch.rand(n, d, generator=gen, dtype=torch.float64) - 1


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# --------------------------------------------------------------------------------------------
# shapes and parameter counts


@pytest.mark.parametrize("width", [[2, 3, 1], [1, 4, 4, 2], [3, 1]])
def test_kan_output_shape(width):
    torch.manual_seed(0)
    m = KAN(width, grid=4, k=3)
    y = m(torch.rand(11, width[0]) * 2 - 1)
    assert y.shape == (11, width[-1])
    assert len(m.layers) == len(width) - 1
    for layer, a, b in zip(m.layers, width[:-1], width[1:]):
        assert (layer.in_features, layer.out_features) == (a, b)
        assert layer.coef.shape == (a, 4 + 3, b)


def test_kan_layer_shapes():
    torch.manual_seed(0)
    layer = KANLayer(3, 5, grid=6, k=2)
    x = torch.rand(9, 3) * 2 - 1
    assert layer(x).shape == (9, 5)
    assert layer.basis(x).shape == (9, 3, 8)
    assert layer.edge_splines(x).shape == (9, 3, 5)
    lo, hi = layer.grid_ranges()
    assert lo.shape == hi.shape == (3,)
    assert torch.allclose(lo, torch.full((3,), -1.0)) and torch.allclose(hi, torch.full((3,), 1.0))


@pytest.mark.parametrize("width,G,k", [([2, 10, 1], 5, 3), ([2, 3, 1], 7, 2), ([4, 2, 3, 1], 3, 1), ([1, 1], 20, 5)])
def test_kan_n_params_formula(width, G, k):
    m = KAN(width, grid=G, k=k)
    expected = sum(a * b * (G + k + 2) for a, b in zip(width[:-1], width[1:]))
    assert m.n_params() == expected
    assert m.n_params() == sum(p.numel() for p in m.parameters())


def test_kan_n_params_after_extension():
    m = KAN([2, 5, 1], grid=3, k=3)
    m.extend_grid(6)
    assert m.n_params() == (2 * 5 + 5 * 1) * (6 + 3 + 2)


def test_kan_layer_forward_is_sum_of_edge_functions(f64):
    """layer(x)_o = sum_i scale_base[i,o] silu(x_i) + scale_sp[i,o] sum_m B_m(x_i) coef[i,m,o],
    with the basis from the Cox–de Boor reference, also for inputs outside the grid."""
    torch.manual_seed(3)
    G, k = 5, 3
    layer = KANLayer(2, 3, grid=G, k=k)
    with torch.no_grad():
        layer.scale_sp.copy_(torch.rand(2, 3) + 0.5)
    x = 3 * torch.rand(50, 2) - 1.5  # inside, in the padding and beyond it
    knots = -1 - k * 0.4 + 0.4 * torch.arange(G + 2 * k + 1, dtype=torch.float64)
    expected = torch.zeros(50, 3)
    for i in range(2):
        B = cox_de_boor_basis(x[:, i], knots, k)  # (50, G+k)
        spline = B @ layer.coef[i]  # (50, 3)
        expected += layer.scale_base[i] * F.silu(x[:, i : i + 1]) + layer.scale_sp[i] * spline
    assert (layer(x) - expected).abs().max().item() < 1e-12


def test_kan_layer_outside_padded_grid_is_pure_silu(f64):
    torch.manual_seed(4)
    layer = KANLayer(2, 2, grid=5, k=3)
    x = torch.tensor([[3.0, -3.0], [10.0, 2.3]])  # beyond -1 - 3*0.4 and 1 + 3*0.4
    assert torch.allclose(layer(x), F.silu(x) @ layer.scale_base, atol=1e-14, rtol=0)


# --------------------------------------------------------------------------------------------
# grid extension and update


@pytest.mark.parametrize("k", [1, 3])
def test_extend_grid_refinement_preserves_output(f64, k):
    torch.manual_seed(0)
    m = KAN([2, 3, 1], grid=5, k=k)
    _random_coefs(m, seed=k)
    x = _inputs(500, 2)
    hidden = m.layer_inputs(x)[1]
    assert hidden.abs().max() < 1  # precondition: the hidden layer only sees its grid range
    y0 = m(x).detach()
    assert y0.std() > 1e-2  # non-trivial function
    m.extend_grid(10)
    assert m.grid == 10 and all(layer.grid == 10 for layer in m.layers)
    assert all(layer.coef.shape[1] == 10 + k for layer in m.layers)
    assert (m(x) - y0).abs().max().item() < 1e-10


@pytest.mark.parametrize("new_grid", [10, 15])
def test_extend_grid_refinement_preserves_the_laplacian(f64, new_grid):
    """A PDE residual sees second derivatives: a refinement (G -> m*G) must keep them too, exactly."""
    torch.manual_seed(0)
    m = KAN([2, 3, 1], grid=5, k=3)
    _random_coefs(m, seed=3)
    x = _inputs(400, 2)
    assert m.layer_inputs(x)[1].abs().max() < 1
    lap0 = Fields(m, x, ("x", "y"), ("u",)).laplacian("u").detach()
    m.extend_grid(new_grid)
    lap1 = Fields(m, x, ("x", "y"), ("u",)).laplacian("u").detach()
    assert lap0.abs().max() > 1e-2
    assert (lap1 - lap0).abs().max().item() < 1e-8 * lap0.abs().max().item()


def test_extend_grid_non_refinement_is_close_and_reports_new_grid(f64):
    torch.manual_seed(0)
    m = KAN([2, 3, 1], grid=5, k=3)
    _smooth_coefs(m, seed=1)
    x = _inputs(500, 2)
    y0 = m(x).detach()
    lo0 = [layer.grid_ranges()[0].clone() for layer in m.layers]
    hi0 = [layer.grid_ranges()[1].clone() for layer in m.layers]
    m.extend_grid(7)
    assert m.grid == 7
    for layer, lo, hi in zip(m.layers, lo0, hi0):
        assert layer.grid == 7
        assert layer.coef.shape == (layer.in_features, 7 + 3, layer.out_features)
        assert isinstance(layer.coef, torch.nn.Parameter) and layer.coef.requires_grad
        new_lo, new_hi = layer.grid_ranges()
        assert torch.allclose(new_lo, lo, atol=1e-14) and torch.allclose(new_hi, hi, atol=1e-14)
        assert torch.allclose(layer.grid_h, (hi - lo) / 7, atol=1e-15)
    rel = _rel(m(x).detach(), y0)
    assert rel < 1e-2
    assert "grid=7" in repr(m)


def test_update_grid_covers_hidden_activations_and_keeps_output(f64):
    torch.manual_seed(0)
    m = KAN([2, 3, 1], grid=5, k=3)
    _smooth_coefs(m, seed=2)
    x = _inputs(1000, 2, seed=5)
    y0 = m(x).detach()
    h = m.layer_inputs(x)[1]
    hmin, hmax = h.min(0).values, h.max(0).values
    assert ((hmax - hmin) < 1.5).all()  # the activations use only part of [-1, 1]: the range must move
    m.update_grid(x, margin=0.01)
    lo, hi = m.layers[1].grid_ranges()
    assert (lo <= hmin).all() and (hi >= hmax).all()
    pad = 0.01 * (hmax - hmin)
    assert torch.allclose(lo, hmin - pad, atol=1e-12) and torch.allclose(hi, hmax + pad, atol=1e-12)
    # the first layer keeps grid_range
    lo0, hi0 = m.layers[0].grid_ranges()
    assert torch.equal(lo0, torch.full((2,), -1.0)) and torch.allclose(hi0, torch.full((2,), 1.0), atol=1e-15)
    assert m.grid == 5
    assert _rel(m(x).detach(), y0) < 1e-3


def test_update_grid_deeper_network_moves_every_hidden_layer(f64):
    torch.manual_seed(0)
    m = KAN([2, 3, 2, 1], grid=5, k=3)
    _smooth_coefs(m, seed=3)
    x = _inputs(500, 2, seed=6)
    m.update_grid(x)
    seen = m.layer_inputs(x)
    for layer, h in zip(m.layers[1:], seen[1:]):
        lo, hi = layer.grid_ranges()
        assert (lo <= h.min(0).values).all() and (hi >= h.max(0).values).all()
        assert (hi - lo < 1.9).any()  # moved off the default [-1, 1]


def test_refit_rejects_decreasing_range(f64):
    layer = KANLayer(1, 1)
    with pytest.raises(ValueError):
        layer.refit(5, torch.tensor([1.0]), torch.tensor([0.0]))


# --------------------------------------------------------------------------------------------
# config and normalisation


def test_config_rebuilds_identical_model_after_extension_and_update(f64):
    torch.manual_seed(0)
    m = KAN([2, 4, 1], grid=3, k=3, bounds=([0.0, -2.0], [1.0, 2.0]))
    _smooth_coefs(m, seed=4)
    m.extend_grid(6)
    x = torch.rand(200, 2) * torch.tensor([1.0, 4.0]) + torch.tensor([0.0, -2.0])
    m.update_grid(x)
    cfg = m.config()
    assert cfg["grid"] == 6 and cfg["k"] == 3 and cfg["width"] == [2, 4, 1]
    lower, upper = cfg["bounds"]
    assert lower == pytest.approx([0.0, -2.0], abs=1e-12) and upper == pytest.approx([1.0, 2.0], abs=1e-12)
    m2 = KAN(**cfg)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), m(x))
    assert m2.n_params() == m.n_params()


def test_config_without_bounds_roundtrip():
    m = KAN([3, 2, 2], grid=4, k=2, init_scale=0.05)
    cfg = m.config()
    assert cfg["bounds"] == ([-1.0, -1.0, -1.0], [1.0, 1.0, 1.0])
    assert cfg["init_scale"] == 0.05 and cfg["grid_range"] == (-1.0, 1.0)
    m2 = KAN(**cfg)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(5, 3) * 2 - 1
    assert torch.equal(m2(x), m(x))


def test_input_normalisation_is_affine_map_to_grid_range(f64):
    torch.manual_seed(0)
    bounded = KAN([2, 3, 1], grid=5, bounds=([0.0, 10.0], [1.0, 20.0]))
    _random_coefs(bounded, seed=7)
    plain = KAN([2, 3, 1], grid=5)
    state = {k: v for k, v in bounded.state_dict().items() if not k.startswith("normalize.")}
    missing, unexpected = plain.load_state_dict(state, strict=False)
    assert set(missing) == {"normalize.scale", "normalize.shift"} and not unexpected
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(300, 2, generator=gen, dtype=torch.float64) * torch.tensor([1.0, 10.0]) + torch.tensor([0.0, 10.0])
    z = torch.stack([2 * x[:, 0] - 1, (x[:, 1] - 10.0) / 5.0 - 1], dim=1)
    assert z.min() >= -1 and z.max() <= 1
    assert (bounded(x) - plain(z)).abs().max().item() < 1e-13
    assert bounded.normalize.bounds()[0] == pytest.approx([0.0, 10.0], abs=1e-12)
    assert bounded.normalize.bounds()[1] == pytest.approx([1.0, 20.0], abs=1e-12)
    # the corners of the box map to the corners of [-1, 1]^2
    corners = torch.tensor([[0.0, 10.0], [1.0, 20.0]])
    assert torch.allclose(bounded.normalize(corners), torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), atol=1e-14)


def test_normaliser_targets_custom_grid_range(f64):
    m = KAN([1, 1], grid=4, bounds=([2.0], [6.0]), grid_range=(0.0, 1.0))
    assert torch.allclose(m.normalize(torch.tensor([[2.0], [4.0], [6.0]])), torch.tensor([[0.0], [0.5], [1.0]]), atol=1e-15)
    lo, hi = m.layers[0].grid_ranges()
    assert lo.tolist() == [0.0] and hi.tolist() == pytest.approx([1.0])


# --------------------------------------------------------------------------------------------
# argument validation


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"width": [2, 3, 1], "grid": -5}, r"^grid\b"),
        ({"width": [2, 3, 1], "grid": 0}, r"^grid\b"),
        ({"width": [2, 3, 1], "k": 0}, r"^k\b"),
        ({"width": [2, 3, 1], "k": 2.5}, r"^k\b"),
        ({"width": [2]}, r"^width\b"),
        ({"width": "21"}, r"^width\b"),
        ({"width": [2, 0, 1]}, r"^width\[1\]"),
        ({"width": [2, 3, -1]}, r"^width\[2\]"),
        ({"width": [2, 3, 1], "init_scale": -0.1}, r"^init_scale\b"),
        ({"width": [2, 3, 1], "grid_range": (1.0, -1.0), "bounds": ([0.0, 0.0], [1.0, 1.0])}, r"^grid_range\b"),
        ({"width": [2, 3, 1], "bounds": ([0.0], [1.0])}, r"^bounds\b"),
        ({"width": [2, 3, 1], "bounds": ([0.0, 1.0], [1.0, 1.0])}, r"^bounds\b"),
    ],
)
def test_kan_invalid_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        KAN(**kwargs)


def test_kan_decreasing_grid_range_without_bounds_names_grid_range():
    with pytest.raises(ValueError, match=r"^grid_range\b"):
        KAN([2, 3, 1], grid_range=(1.0, -1.0))


def test_extend_grid_invalid():
    m = KAN([1, 1], grid=3)
    with pytest.raises(ValueError, match=r"^grid\b"):
        m.extend_grid(0)


# --------------------------------------------------------------------------------------------
# MLP


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin", "gelu", "softplus"])
def test_mlp_shapes(activation):
    torch.manual_seed(0)
    m = MLP([3, 8, 8, 2], activation=activation)
    y = m(torch.rand(13, 3))
    assert y.shape == (13, 2)
    assert torch.isfinite(y).all()
    linears = [mod for mod in m.net if isinstance(mod, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(3, 8), (8, 8), (8, 2)]
    assert all(torch.equal(l.bias, torch.zeros_like(l.bias)) for l in linears)


def test_mlp_sin_activation_is_sine(f64):
    torch.manual_seed(0)
    m = MLP([1, 4, 1], activation="sin")
    x = torch.linspace(-1, 1, 9)[:, None]
    l1, l2 = m.net[0], m.net[2]
    assert torch.allclose(m(x), l2(torch.sin(l1(x))), atol=1e-14)


def test_mlp_n_params():
    assert MLP([2, 100, 100, 100, 1]).n_params() == 20601
    assert MLP([3, 5, 2]).n_params() == 3 * 5 + 5 + 5 * 2 + 2


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 10, 1], activation="relu")


def test_mlp_invalid_width():
    with pytest.raises(ValueError, match=r"^width\[1\]"):
        MLP([2, 0, 1])


def test_mlp_bounds_and_config(f64):
    torch.manual_seed(0)
    m = MLP([2, 6, 1], activation="gelu", bounds=([0.0, 10.0], [1.0, 20.0]))
    x = torch.tensor([[0.0, 10.0], [1.0, 20.0], [0.5, 15.0]])
    assert torch.allclose(m.normalize(x), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]), atol=1e-14)
    cfg = m.config()
    assert cfg["activation"] == "gelu" and cfg["width"] == [2, 6, 1]
    m2 = MLP(**cfg)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), m(x))


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_grid_extension_leaves_contiguous_parameters(basis):
    """torch's L-BFGS flattens each gradient with view(-1), which fails for a parameter that is not
    contiguous; a least-squares refit returns column-major arrays (seen on CUDA after grid extension)."""
    model = KAN([2, 4, 1], grid=5, basis=basis)
    model.extend_grid(10)
    assert all(p.is_contiguous() for p in model.parameters())
    x = torch.rand(50, 2)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=2)

    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        return loss

    opt.step(closure)
