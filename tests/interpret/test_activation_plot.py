"""The activation figure of a KAN (kanpde.interpret.activations): the data it draws and the file it writes."""
from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from kanpde.interpret.activations import activation_curves, format_symbolic, plot_activations
from kanpde.models import KAN, MLP


@pytest.fixture
def model(f64):
    torch.manual_seed(0)
    m = KAN(width=[2, 3, 1], grid=5, k=3, bounds=([0.0, 0.0], [1.0, 2.0]))
    m.fix_symbolic(0, 0, 1, "sin", (3.0, 0.0, 1.0, 0.0))
    m.layers[1].remove_edge(2, 0)
    return m


@pytest.fixture
def x(f64):
    g = torch.linspace(0.0, 1.0, 21)
    X, Y = torch.meshgrid(g, 2 * g, indexing="ij")
    return torch.stack([X.flatten(), Y.flatten()], 1)


def test_curves_content(model, x):
    curves = activation_curves(model, x, n_points=100)
    assert [len(c) for c in curves] == [2, 3] and all(len(r) == model.width[l + 1] for l, c in enumerate(curves) for r in c)
    seen = model.layer_inputs(x)
    acts = model.edge_activations(x)
    for l, layer in enumerate(curves):
        lo, hi = seen[l].min(0).values.numpy(), seen[l].max(0).values.numpy()
        for i, row in enumerate(layer):
            for o, c in enumerate(row):
                assert (c.layer, c.i, c.o) == (l, i, o)
                assert c.z.shape == c.phi.shape == (100,)
                assert c.z[0] == lo[i] and c.z[-1] == hi[i] and np.all(np.diff(c.z) >= 0)
                score = acts[l][:, i, o].abs().mean().item()
                assert c.score == pytest.approx(score, rel=1e-12, abs=1e-15)
    sym = curves[0][0][1]
    assert sym.kind == "sin" and sym.symbolic and sym.params == (3.0, 0.0, 1.0, 0.0)
    assert np.max(np.abs(sym.phi - np.sin(3 * sym.z))) < 1e-12
    assert sym.formula == "sin(3x)"
    pruned = curves[1][2][0]
    assert pruned.kind == "pruned" and not pruned.symbolic and pruned.score == 0.0 and pruned.formula is None
    assert np.all(pruned.phi == 0)
    assert curves[0][1][2].kind == "numeric" and curves[0][1][2].score > 0


def test_numeric_curve_matches_layer(model, x):
    """A numeric edge's curve is the layer's edge evaluated at the curve's points."""
    c = activation_curves(model, x, n_points=50)[0][1][2]
    z = torch.zeros(50, 2, dtype=torch.float64)
    z[:, 1] = torch.from_numpy(c.z)
    with torch.no_grad():
        ref = model.layers[0].edges(z, 0)[0][:, 1, 2].numpy()
    np.testing.assert_allclose(c.phi, ref, rtol=0, atol=1e-14)


def test_png_written(model, x, tmp_path):
    out = plot_activations(model, x, tmp_path / "sub" / "activations.png", inputs=["x", "y"], outputs=["u"], title="demo")
    assert out == tmp_path / "sub" / "activations.png" and out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(out)
    h, w = img.shape[:2]
    assert h > 0 and w > 0
    # 6 panels in the widest row vs 2 layer rows: wider than tall, and not mostly blank
    assert w > h
    assert img[..., :3].std() > 0.01
    assert [p.name for p in out.parent.iterdir()] == ["activations.png"]  # no temp file left


def test_figure_scales_with_width(f64, tmp_path):
    torch.manual_seed(1)
    small, wide = KAN([2, 2, 1]), KAN([2, 6, 1])
    x = torch.rand(30, 2) * 2 - 1
    a = mpimg.imread(plot_activations(small, x, tmp_path / "a.png"))
    b = mpimg.imread(plot_activations(wide, x, tmp_path / "b.png"))
    assert b.shape[1] > a.shape[1] and b.shape[0] == a.shape[0]


def test_format_symbolic():
    assert format_symbolic("sin", 3.14159, -1.0, 0.5, 0.2) == "0.5·sin(3.14x − 1) + 0.2"
    assert format_symbolic("x^2", 1.0, 0.5, -2.0, -0.25) == "−2·(x + 0.5)² − 0.25"
    assert format_symbolic("x", 1.0, 0.0, 2.0, 0.0) == "2·x"
    assert format_symbolic("exp", -1.0, 0.0, 1.0, 0.0) == "exp(−x)"
    assert format_symbolic("x^3", 1.0, 0.0, 1.0, 1.0) == "x³ + 1"
    assert format_symbolic("0", 1.0, 0.0, 0.0, 0.0) == "0"


def test_bad_inputs(model, x, tmp_path):
    with pytest.raises(TypeError, match="KAN"):
        plot_activations(MLP([2, 5, 1]), x, tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        plot_activations(model, torch.zeros(4, 3, dtype=torch.float64), tmp_path / "w.png")
    with pytest.raises(ValueError, match="inputs"):
        plot_activations(model, x, tmp_path / "n.png", inputs=["x"])
    assert not any(tmp_path.iterdir())


def _knot_ticks(fig, l, i, o):
    """x positions of the knot ticks on the panel of edge i -> o of layer l (None: no ticks)."""
    (ax,) = [a for a in fig.axes if a.get_gid() == f"edge{l}-{i}-{o}"]
    ticks = [c for c in ax.collections if c.get_gid() == "knots"]
    if not ticks:
        return None
    (ticks,) = ticks
    segs = ticks.get_segments()
    assert all(s[0, 0] == s[1, 0] for s in segs)  # vertical
    return ax, np.array([s[0, 0] for s in segs])


def test_free_knots_are_marked_in_each_panel(model, x):
    """With free knots each numeric panel carries ticks at exactly its input's knots inside the panel's range."""
    from kanpde.interpret.activations import activations_figure

    seen = model.layer_inputs(x)
    # layer 0 sees the normalised inputs in [-1, 1]; layer 1's new knots go where its inputs are
    model.layers[0].insert_knots(torch.tensor([[0.1, 0.13], [-0.5, -0.45]]))
    mid = seen[1].min(0).values + 0.37 * (seen[1].max(0).values - seen[1].min(0).values)
    model.layers[1].insert_knots(torch.stack([mid, mid + 1e-2], 1))
    assert model.free_knots
    fig = activations_figure(model, x, inputs=["x", "y"])
    curves = activation_curves(model, x)
    n_marked = 0
    for l, layer in enumerate(model.layers):
        knots = layer.knot_vector().numpy()
        for i in range(layer.in_features):
            lo, hi = seen[l][:, i].min().item(), seen[l][:, i].max().item()
            expected = np.unique(knots[i][(knots[i] >= lo - 1e-12) & (knots[i] <= hi + 1e-12)])
            assert expected.size >= 2  # the panels show several knots, the inserted ones among them
            for o in range(layer.out_features):
                c = curves[l][i][o]
                np.testing.assert_array_equal(c.knots, expected)
                marked = _knot_ticks(fig, l, i, o)
                if c.kind != "numeric":  # symbolic and pruned edges do not use the knots: no ticks
                    assert marked is None
                    continue
                ax, xs = marked
                np.testing.assert_allclose(xs, expected, rtol=0, atol=1e-12)
                assert ax.get_xlim() == pytest.approx((c.z[0], c.z[-1]))  # the ticks did not widen the panel
                n_marked += 1
    assert n_marked == (2 * 3 - 1) + (3 * 1 - 1)  # every numeric edge: 6 + 3 less the symbolic and the pruned one
    inserted = _knot_ticks(fig, 0, 0, 0)[1]
    assert np.isclose(inserted, 0.1).any() and np.isclose(inserted, 0.13).any()


def test_uniform_knots_are_not_marked(model, x, tmp_path):
    """Uniform knots: the curves know them, the panels stay plain."""
    from kanpde.interpret.activations import activations_figure

    assert not model.free_knots
    fig = activations_figure(model, x)
    curves = activation_curves(model, x)
    for l, layer in enumerate(model.layers):
        for i in range(layer.in_features):
            for o in range(layer.out_features):
                assert curves[l][i][o].knots.size >= 2
                assert _knot_ticks(fig, l, i, o) is None
