"""knots.png (kanpde.analysis.figures.plot_knots): where the first layer's knots lie, drawn from a results dict,
and the run that writes it."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from conftest import compose_config
from kanpde.analysis import figures
from kanpde.experiment.run import run
from kanpde.io import read_results

PNG = b"\x89PNG\r\n\x1a\n"


def _results(x, knots, inputs, grid, exact=True):
    """A results dict as read_results gives it: u = sum of sin over the inputs, first-layer knots ``knots``."""
    u = np.sin(3 * x).sum(1, keepdims=True)
    ev = {"x": x, "u_pred": u + 0.01}
    if exact:
        ev["u_exact"] = u
    attrs = {"problem": "demo", "model": "KAN[...]", "inputs": inputs, "outputs": "u", "grid": grid, "k": 3}
    return {"attrs": attrs, "eval": ev, "history": {}, "knots": {"layer0": knots * 2 - 1, "domain": knots}}


def _knot_lines(ax, gid, axis):
    """Positions of the lines with gid ``gid`` on ax, checked to be straight across (vertical: axis 0, horizontal: 1)."""
    pos = []
    for line in (ln for ln in ax.get_lines() if ln.get_gid() == gid):
        data = np.asarray(line.get_xdata() if axis == 0 else line.get_ydata(), dtype=float)
        assert data.size == 2 and data[0] == data[1]
        pos.append(data[0])
    return np.array(pos)


def test_one_input_draws_the_curve_and_the_knots_in_the_domain(tmp_path):
    x = np.linspace(0.0, 1.0, 101)[:, None]
    # G = 4 intervals of cubic splines would be 4 + 7 = 11 knots; free: not evenly spaced, 3 padding knots each side
    knots = np.array([[-0.6, -0.4, -0.2, 0.0, 0.1, 0.15, 0.5, 1.0, 1.2, 1.4, 1.6]])
    res = _results(x, knots, "x", grid=4)
    fig = figures.knots_figure(res)
    (ax,) = fig.axes
    np.testing.assert_array_equal(_knot_lines(ax, "knots0", 0), [0.0, 0.1, 0.15, 0.5, 1.0])
    assert [ln.get_label() for ln in ax.get_lines() if ln.get_gid() is None] == ["prediction", "exact"]
    assert "G = 4" in fig._suptitle.get_text() and "x 5" in fig._suptitle.get_text()
    out = figures.plot_knots(res, tmp_path / "knots.png")
    assert out == tmp_path / "knots.png" and out.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["knots.png"]  # written atomically: no temp file left


def test_two_inputs_draw_the_map_with_vertical_and_horizontal_knot_lines(tmp_path):
    xs, ts = np.linspace(-1.0, 1.0, 41), np.linspace(0.0, 0.99, 34)  # t stops short of the knot at 1
    X, T = np.meshgrid(xs, ts, indexing="ij")
    x = np.stack([X.ravel(), T.ravel()], 1)
    knots = np.array([[-2.2, -1.8, -1.4, -1.0, -0.6, -0.2, -0.1, 0.0, 0.05, 0.1, 0.6, 1.0, 1.4, 1.8, 2.2],
                      [-0.6, -0.4, -0.2, 0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6]])
    res = _results(x, knots, "x,t", grid=8)
    fig = figures.knots_figure(res)
    ax = fig.axes[0]  # the other: its colour bar
    assert any(isinstance(c, QuadMesh) for c in ax.collections)  # a tensor grid: drawn as a mesh, as in solution.png
    np.testing.assert_array_equal(_knot_lines(ax, "knots0", 0), [-1.0, -0.6, -0.2, -0.1, 0.0, 0.05, 0.1, 0.6, 1.0])
    np.testing.assert_array_equal(_knot_lines(ax, "knots1", 1), [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9])
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "t"
    assert "G = 8" in fig._suptitle.get_text() and "x 9, t 8" in fig._suptitle.get_text()
    assert figures.plot_knots(res, tmp_path / "knots.png").read_bytes()[:8] == PNG

    # scattered points (a domain that is no tensor grid): the same lines over a scatter
    keep = x[:, 0] ** 2 + (x[:, 1] - 0.5) ** 2 <= 0.5
    res = _results(x[keep], knots, "x,y", grid=8, exact=False)
    ax = figures.knots_figure(res).axes[0]
    lo, hi = x[keep].min(0), x[keep].max(0)
    for i, axis in ((0, 0), (1, 1)):
        inside = knots[i][(knots[i] >= lo[i]) & (knots[i] <= hi[i])]
        np.testing.assert_array_equal(_knot_lines(ax, f"knots{i}", axis), inside)
    assert figures.plot_knots(res, tmp_path / "scattered.png").read_bytes()[:8] == PNG


def test_three_inputs_draw_one_rug_per_input(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform([0.0, -1.0, 2.0], [1.0, 1.0, 3.0], size=(500, 3))
    base = np.linspace(-0.3, 1.3, 11)
    knots = np.stack([base, 2 * base - 1, base + 2])
    knots[0, 5] = 0.42  # one free knot
    res = _results(x, knots, "x,y,z", grid=4)
    fig = figures.knots_figure(res)
    assert len(fig.axes) == 3
    lo, hi = x.min(0), x.max(0)
    for i, ax in enumerate(fig.axes):
        inside = knots[i][(knots[i] >= lo[i]) & (knots[i] <= hi[i])]
        assert inside.size >= 3
        np.testing.assert_array_equal(_knot_lines(ax, f"knots{i}", 0), inside)
        assert ax.get_xlim() == pytest.approx((lo[i], hi[i])) and ax.get_ylabel() == "xyz"[i]
    assert 0.42 in _knot_lines(fig.axes[0], "knots0", 0)
    assert figures.plot_knots(res, tmp_path / "knots.png").read_bytes()[:8] == PNG


def test_no_knot_table_or_no_domain_entry_draws_nothing(tmp_path):
    x = np.linspace(0.0, 1.0, 11)[:, None]
    res = _results(x, np.linspace(-0.6, 1.6, 11)[None], "x", grid=4)
    del res["knots"]["domain"]  # a model with an input embedding: no knots in the domain's coordinates
    assert figures.plot_knots(res, tmp_path / "a.png") is None
    del res["knots"]  # uniform knots: no table at all
    assert figures.knots_figure(res) is None and figures.plot_knots(res, tmp_path / "b.png") is None
    assert not any(tmp_path.iterdir())


def test_solution_maps_still_drawn(tmp_path):
    """solution.png shares the colour-map code with knots.png: a tensor grid as a mesh, scattered points as points."""
    xs = np.linspace(0.0, 1.0, 12)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    x = np.stack([X.ravel(), Y.ravel()], 1)
    res = _results(x, np.zeros((2, 11)), "x,y", grid=4)
    assert figures.plot_solution(res, tmp_path / "grid.png").read_bytes()[:8] == PNG
    res = _results(x[x.sum(1) <= 1.0], np.zeros((2, 11)), "x,y", grid=4)
    assert figures.plot_solution(res, tmp_path / "scattered.png").read_bytes()[:8] == PNG


@pytest.mark.slow  # a few seconds each: a 30-step training and its figures
@pytest.mark.parametrize("method", ["insert", "none"])
def test_a_run_with_free_knots_writes_knots_png(tmp_path, method):
    cfg = compose_config("problem=poisson2d", "problem.n_interior=200", "problem.n_boundary=40", "model.width=[2,3,1]",
                         "trainer.optimizer=adam", "trainer.lr=1e-2", "trainer.steps=30", "trainer.log_every=10",
                         f"trainer.knots.method={method}", "trainer.knots.every=10", "trainer.progress=false",
                         "trainer.resume=never", "plots=true", f"interpret.activations={method == 'insert'}")
    run(cfg, tmp_path)
    saved = read_results(tmp_path / "results.h5")
    assert (tmp_path / "solution.png").is_file() and (tmp_path / "history.png").is_file()
    if method == "none":  # uniform knots: no table, no figure
        assert "knots" not in saved and not (tmp_path / "knots.png").exists()
        return
    assert (tmp_path / "knots.png").read_bytes()[:8] == PNG and (tmp_path / "activations.png").is_file()
    domain = saved["knots"]["domain"]
    assert domain.shape == (2, saved["attrs"]["grid"] + 2 * 3 + 1) and saved["attrs"]["grid"] > 5  # knots were inserted
    ax = figures.knots_figure(saved).axes[0]
    lo, hi = saved["eval"]["x"].min(0), saved["eval"]["x"].max(0)
    for i, axis in ((0, 0), (1, 1)):
        inside = np.unique(domain[i][(domain[i] >= lo[i] - 1e-9) & (domain[i] <= hi[i] + 1e-9)])
        np.testing.assert_allclose(_knot_lines(ax, f"knots{i}", axis), inside, rtol=0, atol=0)
