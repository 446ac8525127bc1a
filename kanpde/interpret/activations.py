"""A trained KAN's learned activations drawn laid out like the network (``activations.png``).

One row of small panels per layer, input layer at the bottom and output layer at the top as in the
KAN paper's figures: each panel is one edge phi_{i->o} plotted over the range its input took on the
samples, shaded by the edge's importance (mean |phi| on the samples, relative to the strongest edge
of its layer).  Symbolic edges are drawn in red with their formula, pruned edges as empty grey
panels.  :func:`activation_curves` returns the plotted data, so it can be checked or reused.

When the KAN has free (non-uniform) knots, short ticks along the bottom of each numeric edge's panel
mark the knots of that edge's input inside the panel's range.

Layer 0's inputs are the model's normalised inputs (what its edges actually see), not raw coordinates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kanpde.io import atomic_path
from kanpde.interpret.importance import edge_scores
from kanpde.interpret.network import kan_of

__all__ = ["EdgeCurve", "activation_curves", "activations_figure", "format_symbolic", "plot_activations"]

MIN_ALPHA = 0.15
"""Shade of the least important edges, so that weak edges stay visible."""

NUMERIC_COLOR, SYMBOLIC_COLOR, PRUNED_COLOR = "black", "tab:red", "0.6"

KNOT_COLOR, KNOT_TICK = "tab:blue", 0.12
"""Knot ticks: their colour and height as a fraction of the panel."""


@dataclass(frozen=True)
class EdgeCurve:
    """One edge i -> o of layer ``layer`` as plotted.

    Attributes:
        kind: ``numeric``, ``pruned`` or the symbolic function's name (e.g. ``sin``).
        score: importance, the mean of |phi| over the samples (0 for a pruned edge).
        z: (n,) increasing points from the min to the max of input i of this layer on the samples.
        phi: (n,) the edge's values at z.
        params: (a, b, c, d) of a symbolic edge c·f(a·z + b) + d, else None.
        formula: the symbolic edge as text (:func:`format_symbolic`), else None.
        knots: the distinct knots of input i (B-spline layers, uniform or free) that lie in [z[0], z[-1]],
            increasing; None for a layer without knots (Chebyshev, RBF edges).
    """

    layer: int
    i: int
    o: int
    kind: str
    score: float
    z: np.ndarray
    phi: np.ndarray
    params: tuple[float, float, float, float] | None = None
    formula: str | None = None
    knots: np.ndarray | None = None

    @property
    def symbolic(self) -> bool:
        """Whether the edge is symbolic (neither numeric nor pruned)."""
        return self.kind not in ("numeric", "pruned")


def _prepare_x(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x as a (batch, width[0]) tensor in the model's dtype and device; ValueError otherwise."""
    n_in = model.width[0]
    x = torch.as_tensor(x)
    if x.dim() != 2 or x.shape[1] != n_in or x.shape[0] == 0:
        raise ValueError(f"x must be (batch, {n_in}) for a KAN of width {list(model.width)}, got shape {tuple(x.shape)}")
    ref = next(model.parameters(), None)
    return x if ref is None else x.to(dtype=ref.dtype, device=ref.device)


def _knots_in(knots: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The distinct values of knots in [lo, hi] (up to rounding: 1e-9 of the range), increasing."""
    tol = 1e-9 * max(abs(hi - lo), 1e-12)
    knots = np.unique(knots)
    return knots[(knots >= lo - tol) & (knots <= hi + tol)]


def _num(v: float) -> str:
    """v to 3 significant digits, with a proper minus sign."""
    s = f"{v:.3g}"
    return s.replace("-", "−")


_POWERS = {"x^2": "²", "x^3": "³", "x^4": "⁴"}


def format_symbolic(name: str, a: float, b: float, c: float, d: float, var: str = "x") -> str:
    """c·f(a·var + b) + d as short text, e.g. ``0.5·sin(3.14x − 1) + 0.2``; unit scales and zero shifts are dropped."""
    if name == "0":
        return "0"
    inner = var if a == 1 else f"−{var}" if a == -1 else f"{_num(a)}{var}"
    if b != 0:
        inner += f" {'−' if b < 0 else '+'} {_num(abs(b))}"
    bare = inner == var
    if name == "x":
        outer, bare = inner, False
    elif name in _POWERS:
        outer = f"{inner}{_POWERS[name]}" if bare else f"({inner}){_POWERS[name]}"
    elif name == "abs":
        outer = f"|{inner}|"
    elif name == "gaussian":
        outer = f"exp(−{inner}²)" if bare else f"exp(−({inner})²)"
    else:
        outer = f"{name}({inner})"
    if c == 0:
        text = ""
    elif c == 1:
        text = outer
    elif c == -1:
        text = f"−{outer}"
    else:
        # a sum inside (the identity with a shift) needs brackets when scaled
        text = f"{_num(c)}·({outer})" if name == "x" and b != 0 else f"{_num(c)}·{outer}"
    if d != 0 or not text:
        text = _num(d) if not text else f"{text} {'−' if d < 0 else '+'} {_num(abs(d))}"
    return text


def activation_curves(model: torch.nn.Module, x: torch.Tensor, n_points: int = 100) -> list[list[list[EdgeCurve]]]:
    """Every edge's curve and importance on the samples x: (batch, width[0]); ``[layer][i][o]``.

    Each layer is evaluated once on an (n_points, in) tensor whose column i runs evenly from the
    min to the max of that layer's input i on x, which gives all of its edges' curves together.
    """
    model = kan_of(model)
    x = _prepare_x(model, x)
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    with torch.no_grad():
        seen = model.layer_inputs(x)
        scores = edge_scores(model, x)
        s = torch.linspace(0.0, 1.0, n_points, dtype=x.dtype, device=x.device)[:, None]
        curves = []
        for l, (layer, h) in enumerate(zip(model.layers, seen)):
            lo, hi = h.min(0).values, h.max(0).values
            z = lo + s * (hi - lo)  # (n_points, in)
            z[-1] = hi  # exactly the max, whatever the rounding
            phi = layer.edges(z, 0)[0].cpu().numpy()  # (n_points, in, out)
            z_np, score = z.cpu().numpy(), scores[l].cpu().numpy()
            params = layer.symbolic.params().cpu().numpy() if getattr(layer, "symbolic", None) is not None else None
            knots = layer.knot_vector().detach().cpu().numpy() if hasattr(layer, "knot_vector") else None
            rows = []
            for i in range(phi.shape[1]):
                inside = None if knots is None else _knots_in(knots[i], float(z_np[0, i]), float(z_np[-1, i]))
                row = []
                for o in range(phi.shape[2]):
                    kind = layer.edge_kind(i, o)
                    p = f = None
                    if kind not in ("numeric", "pruned") and params is not None:
                        p = tuple(float(v) for v in params[i, o])
                        f = format_symbolic(kind, *p)
                    row.append(EdgeCurve(l, i, o, kind, float(score[i, o]), z_np[:, i].copy(), phi[:, i, o].copy(), p, f, inside))
                rows.append(row)
            curves.append(rows)
    return curves


def _names(given: Sequence[str] | None, n: int, stem: str, what: str) -> list[str]:
    if given is None:
        return [stem] if n == 1 else [f"{stem}{k}" for k in range(n)]
    names = [str(g) for g in given]
    if len(names) != n:
        raise ValueError(f"{what} needs {n} names, got {len(names)}: {names}")
    return names


def plot_activations(
    model: torch.nn.Module,
    x: torch.Tensor,
    path: str | os.PathLike,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    title: str | None = None,
    n_points: int = 100,
    dpi: int = 120,
) -> Path:
    """Draw every edge of a KAN over the inputs it sees on x: (batch, width[0]) and save the figure to ``path``.

    Nodes are dots: the inputs (named by ``inputs``, default x0, x1, ...) at the bottom, the outputs
    (``outputs``, default u) at the top, hidden nodes numbered; each input node sits under its
    group of panels and thin lines join the panels to their two nodes.  Line shade follows the
    edge's importance within its layer.  With free knots, ticks along each numeric panel's bottom
    mark its input's knots.  Written atomically; returns the path.
    """
    fig = activations_figure(model, x, inputs, outputs, title, n_points)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def activations_figure(
    model: torch.nn.Module,
    x: torch.Tensor,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    title: str | None = None,
    n_points: int = 100,
) -> Figure:
    """The figure :func:`plot_activations` saves.  Edge i -> o of layer l is drawn on the axes with
    gid ``edge<l>-<i>-<o>``; its knot ticks, if any, are a collection with gid ``knots``."""
    curves = activation_curves(model, x, n_points)
    # Knots are marked only when the KAN has free knots: uniform knots are evenly spaced by construction,
    # so their ticks would say nothing beyond G and only clutter small panels (a comb at G = 50), while
    # free knots show where training or refinement put resolution.  Then every B-spline layer is marked,
    # a layer whose knots stayed uniform included, so layers can be compared.
    mark_knots = bool(getattr(kan_of(model), "free_knots", False))
    width = list(model.width)
    in_names = _names(inputs, width[0], "x", "inputs")
    out_names = _names(outputs, width[-1], "u", "outputs")
    n_layers = len(curves)

    # sizes in inches; panels shrink for very wide layers so the figure stays printable
    n_max = max(a * b for a, b in zip(width[:-1], width[1:]))
    panel = float(np.clip(24.0 / (1.25 * n_max), 0.35, 1.0))
    gap = 0.25 * panel
    band = 0.75  # vertical room between a node row and the panels: node, label, lines, formula
    margin = 0.3
    top = 0.45 if title else 0.0
    W = max(3.0, n_max * (panel + gap) + 2 * margin)
    H = 2 * margin + top + n_layers * (panel + 2 * band)

    fig = Figure(figsize=(W, H))
    FigureCanvasAgg(fig)
    back = fig.add_axes((0, 0, 1, 1))
    back.set_xlim(0, W)
    back.set_ylim(0, H)
    back.axis("off")

    def row_x(n: int) -> np.ndarray:
        """Centres of n evenly spaced panels, the row centred in the figure."""
        return W / 2 + (np.arange(n) - (n - 1) / 2) * (panel + gap)

    # node rows: y of row l (l = 0 inputs ... n_layers outputs) and x of each node
    node_y = [margin + band / 2 + l * (panel + 2 * band) for l in range(n_layers + 1)]
    node_y[-1] = node_y[-2] + panel + 1.5 * band
    node_x = []
    for l in range(n_layers):
        n_in, n_out = width[l], width[l + 1]
        node_x.append(row_x(n_in * n_out).reshape(n_in, n_out).mean(1))  # under its group of panels
    last = row_x(width[-2] * width[-1])
    spread = (last[-1] - last[0]) / max(width[-1], 1)
    node_x.append(W / 2 + (np.arange(width[-1]) - (width[-1] - 1) / 2) * spread)

    line_kw = dict(lw=0.6, solid_capstyle="round", zorder=0)
    fs = 7 if panel >= 0.7 else 5
    for l, rows in enumerate(curves):
        n_in, n_out = width[l], width[l + 1]
        xs = row_x(n_in * n_out)
        y0 = node_y[l] + band / 2 + 0.15  # panel bottom
        best = max(c.score for row in rows for c in row)
        for c in (c for row in rows for c in row):
            cx = xs[c.i * n_out + c.o]
            alpha = MIN_ALPHA if best <= 0 else max(MIN_ALPHA, c.score / best)
            pruned = c.kind == "pruned"
            color = PRUNED_COLOR if pruned else SYMBOLIC_COLOR if c.symbolic else NUMERIC_COLOR
            a_line = MIN_ALPHA if pruned else alpha
            back.plot([node_x[l][c.i], cx], [node_y[l] + 0.07, y0], color=color, alpha=a_line, **line_kw)
            back.plot([cx, node_x[l + 1][c.o]], [y0 + panel, node_y[l + 1] - 0.07], color=color, alpha=a_line, **line_kw)

            ax = fig.add_axes(((cx - panel / 2) / W, y0 / H, panel / W, panel / H))
            ax.set_gid(f"edge{l}-{c.i}-{c.o}")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_linewidth(0.5)
                spine.set_color("0.7")
            ax.text(0.04, 0.96, f"{c.i}→{c.o}", transform=ax.transAxes, fontsize=fs - 1, color="0.45", va="top", ha="left")
            if pruned:
                ax.set_facecolor("0.93")
                ax.text(0.5, 0.5, "pruned", transform=ax.transAxes, fontsize=fs, color="0.5", ha="center", va="center")
                continue
            ax.plot(c.z, c.phi, color=color, alpha=alpha, lw=1.4)
            if c.z[-1] > c.z[0]:
                ax.set_xlim(c.z[0], c.z[-1])
            if mark_knots and c.kind == "numeric" and c.knots is not None and c.knots.size:
                # short ticks up from the bottom axis: x in data, y in axes fraction, so they do not move the limits
                ax.vlines(c.knots, 0, KNOT_TICK, transform=ax.get_xaxis_transform(), colors=KNOT_COLOR,
                          lw=0.8, alpha=0.9, gid="knots")
            if c.formula is not None:
                ax.set_title(c.formula, fontsize=fs - 1, color=SYMBOLIC_COLOR, pad=2,
                             bbox=dict(facecolor="white", edgecolor="none", pad=0.5))

    # nodes and their labels
    for l, xs in enumerate(node_x):
        back.scatter(xs, np.full(len(xs), node_y[l]), s=18, color="black", zorder=2)
        for k, nx in enumerate(xs):
            if l == 0:
                back.text(nx, node_y[l] - 0.12, in_names[k], ha="center", va="top", fontsize=10)
            elif l == n_layers:
                back.text(nx, node_y[l] + 0.12, out_names[k], ha="center", va="bottom", fontsize=10)
            else:
                back.text(nx + 0.08, node_y[l], str(k), ha="left", va="center", fontsize=7, color="0.35")
    if title:
        fig.suptitle(title, y=1 - 0.15 / H, va="top", fontsize=11)
    return fig
