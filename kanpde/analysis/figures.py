"""Figures drawn from a results file: the solution (prediction | exact | error), the training history and, for free
knots, where the first layer's knots lie in the domain."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kanpde.io import atomic_path


def _figure(*grid: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot: files only, and a notebook's backend is left alone."""
    fig = Figure(figsize=figsize, layout=kwargs.pop("layout", "constrained"))
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    return Path(path)


def grid_extensions(history: Mapping[str, Any]) -> dict[int, int]:
    """``{step: new grid}`` for every grid change recorded in a training history (empty without a ``grid`` column)."""
    grid, step = np.asarray(history.get("grid", [])), np.asarray(history["step"])
    if grid.size < 2:
        return {}
    return {int(step[i + 1]): int(grid[i + 1]) for i in np.nonzero(np.diff(grid))[0]}


def _mark_extensions(axes: list[Axes], extensions: Mapping[int, int]) -> None:
    """A dotted line on every axis at each extension step, labelled ``G=<new grid>`` on the last axis."""
    for s, g in sorted(extensions.items()):
        for ax in axes:
            ax.axvline(s, color="grey", ls=":", lw=1)
        axes[-1].annotate(f"G={g}", (s, 0.98), xycoords=("data", "axes fraction"), fontsize=8, va="top", ha="left")


def _colour_map(ax: Axes, x: np.ndarray, val: np.ndarray, cmap: str) -> Any:
    """val at the 2-D points x: (n, 2) as a colour map on ax: a mesh on a full tensor grid (any order), else
    scattered squares (e.g. a grid clipped to a disk or an L-shape); returns the mappable for a colour bar."""
    xs, ys = np.unique(x[:, 0]), np.unique(x[:, 1])
    if xs.size * ys.size == x.shape[0]:
        grid = np.full((ys.size, xs.size), np.nan)
        grid[np.searchsorted(ys, x[:, 1]), np.searchsorted(xs, x[:, 0])] = val
        return ax.pcolormesh(xs, ys, grid, shading="auto", cmap=cmap)
    return ax.scatter(x[:, 0], x[:, 1], c=val, s=4, marker="s", linewidths=0, cmap=cmap)


def plot_solution(results: Mapping[str, Any], path: str | os.PathLike, output: int = 0) -> Path:
    """``solution.png``: prediction, exact solution and pointwise error of one output on the evaluation points.

    1-D: curves; 2-D: maps (a tensor grid as a mesh, other point sets as scattered points);
    3 or more inputs: prediction against exact value, and a histogram of the error.
    """
    ev, attrs = results["eval"], results["attrs"]
    names = str(attrs.get("inputs", "x,y")).split(",") + ["x", "y"]
    x, pred = np.asarray(ev["x"]), np.asarray(ev["u_pred"])[:, output]
    exact = np.asarray(ev["u_exact"])[:, output] if "u_exact" in ev else None
    title = f"{attrs.get('problem', '')} — {attrs.get('model', '')}, {attrs.get('n_params', '?')} params"
    if x.shape[1] == 1:
        fig, axes = _figure(1, 2 if exact is not None else 1, figsize=(10 if exact is not None else 5, 3.8), squeeze=False)
        ax = axes[0, 0]
        ax.plot(x[:, 0], pred, label="prediction")
        if exact is not None:
            ax.plot(x[:, 0], exact, "--", label="exact")
            axes[0, 1].semilogy(x[:, 0], np.abs(pred - exact) + 1e-300)
            axes[0, 1].set(xlabel="x", ylabel="|error|", title="pointwise error")
        ax.set(xlabel="x", ylabel="u", title="solution")
        ax.legend()
    elif x.shape[1] == 2:
        panels = [("prediction", pred)]
        if exact is not None:
            panels += [("exact", exact), ("|error|", np.abs(pred - exact))]
        fig, axes = _figure(1, len(panels), figsize=(4.8 * len(panels), 3.9), squeeze=False)
        for ax, (name, val) in zip(axes[0], panels):
            mesh = _colour_map(ax, x, val, "magma" if name == "|error|" else "viridis")
            fig.colorbar(mesh, ax=ax)
            ax.set(xlabel=names[0], ylabel=names[1], title=name, aspect="auto" if "t" in names[:2] else "equal")
    else:  # 3 or more inputs: no picture of the field; how prediction and solution compare point by point
        fig, axes = _figure(1, 2 if exact is not None else 1, figsize=(10 if exact is not None else 5, 3.9), squeeze=False)
        if exact is None:
            axes[0, 0].hist(pred, bins=60)
            axes[0, 0].set(xlabel="prediction", ylabel="points", title=f"{x.shape[1]} inputs: prediction values")
        else:
            axes[0, 0].plot(exact, pred, ".", ms=1)
            lim = [min(exact.min(), pred.min()), max(exact.max(), pred.max())]
            axes[0, 0].plot(lim, lim, "k--", lw=0.8)
            axes[0, 0].set(xlabel="exact", ylabel="prediction", title=f"{x.shape[1]} inputs: prediction vs exact")
            err = np.abs(pred - exact)
            axes[0, 1].hist(np.log10(err + 1e-300), bins=60)
            axes[0, 1].set(xlabel="log10 |error|", ylabel="points", title="pointwise error")
    fig.suptitle(title)
    return _save(fig, path)


def plot_history(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``history.png``: total and per-term loss, and the relative L2 error, against the training step."""
    h = results["history"]
    step = np.asarray(h["step"])
    fig, (ax_loss, ax_err) = _figure(1, 2, figsize=(11, 3.8))
    ax_loss.semilogy(step, h["loss"], label="loss (weighted)", color="black")
    for key in sorted(k for k in h if k.startswith("loss_")):
        ax_loss.semilogy(step, h[key], label=key[5:], alpha=0.7)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.legend(fontsize=8)
    if "rel_l2" in h and np.isfinite(h["rel_l2"]).any():
        ax_err.semilogy(step, h["rel_l2"], color="tab:red")
    ax_err.set(xlabel="step", ylabel="relative L2 error", title="error on the evaluation grid")
    _mark_extensions([ax_loss, ax_err], grid_extensions(h))
    for ax in (ax_loss, ax_err):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{results['attrs'].get('problem', '')} — {results['attrs'].get('model', '')}")
    return _save(fig, path)


def knots_inside(knots: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The distinct knots of one input that lie in [lo, hi] (up to rounding: 1e-9 of the range), increasing."""
    tol = 1e-9 * max(abs(hi - lo), 1e-12)
    knots = np.unique(np.asarray(knots, dtype=float))
    return knots[(knots >= lo - tol) & (knots <= hi + tol)]


KNOT_LINE = dict(color="white", lw=0.6, path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black", alpha=0.45)])
"""Knot lines over a colour map: white with a translucent black edge, visible on both ends of viridis."""


def knots_figure(results: Mapping[str, Any]) -> Figure | None:
    """The figure of :func:`plot_knots`, not saved (None without a ``knots`` group or its ``domain`` entry).

    Input i's knot lines carry ``gid="knots<i>"``: vertical lines for input 0 (and for every input of
    the 3+-input strips, one axis each), horizontal ones for input 1 of a 2-input problem.
    """
    table = results.get("knots") or {}
    if "domain" not in table:  # uniform knots (no table), or an input embedding: no knots in the domain's coordinates
        return None
    ev, attrs = results["eval"], results["attrs"]
    x, pred = np.asarray(ev["x"], dtype=float), np.asarray(ev["u_pred"], dtype=float)[:, 0]
    domain = np.atleast_2d(np.asarray(table["domain"], dtype=float))
    n_in = x.shape[1]
    if domain.shape[0] != n_in:
        raise ValueError(f"knots/domain has {domain.shape[0]} rows for {n_in} inputs")
    names = str(attrs.get("inputs", "")).split(",")
    names = names if len(names) == n_in and all(names) else (["x"] if n_in == 1 else [f"x{i}" for i in range(n_in)])
    output = str(attrs.get("outputs", "u")).split(",")[0] or "u"
    lo, hi = x.min(0), x.max(0)
    inside = [knots_inside(domain[i], lo[i], hi[i]) for i in range(n_in)]
    # the knots are the first layer's: G intervals of degree k splines, G + 1 knots per input from the
    # domain's one end to the other plus k padding knots beyond each end (not drawn)
    G = int(attrs.get("grid") or domain.shape[1] - 2 * int(attrs.get("k", 3)) - 1)  # a file without grid: from n = G + 2k + 1
    counts = ", ".join(f"{name} {len(t)}" for name, t in zip(names, inside))
    title = f"{attrs.get('problem', '')} — first-layer knots, G = {G}; knots in the domain per input: {counts}"
    if n_in == 1:
        fig, ax = _figure(1, 1, figsize=(6.5, 3.8))
        order = np.argsort(x[:, 0])
        ax.plot(x[order, 0], pred[order], color="tab:blue", label="prediction", zorder=2)
        if "u_exact" in ev:
            ax.plot(x[order, 0], np.asarray(ev["u_exact"], dtype=float)[order, 0], "--", color="0.3", lw=1, label="exact", zorder=2)
        for t in inside[0]:
            ax.axvline(t, color="tab:red", lw=0.8, alpha=0.6, zorder=1, gid="knots0")
        ax.set(xlabel=names[0], ylabel=output, xlim=(lo[0], hi[0]))
        ax.legend(fontsize=8)
    elif n_in == 2:
        fig, ax = _figure(1, 1, figsize=(6.8, 5.0))
        mesh = _colour_map(ax, x, pred, "viridis")
        fig.colorbar(mesh, ax=ax, label=f"{output} (prediction)")
        for t in inside[0]:
            ax.axvline(t, gid="knots0", **KNOT_LINE)
        for t in inside[1]:
            ax.axhline(t, gid="knots1", **KNOT_LINE)
        ax.set(xlabel=names[0], ylabel=names[1], aspect="auto" if "t" in names else "equal")
    else:  # 3 or more inputs: no picture of the field; each input's knots as a rug over its range
        fig, axes = _figure(n_in, 1, figsize=(7.0, 0.9 + 0.55 * n_in), squeeze=False)
        for i, ax in enumerate(axes[:, 0]):
            for t in inside[i]:
                ax.axvline(t, color="black", lw=1.2, gid=f"knots{i}")
            ax.set_xlim(lo[i], hi[i])
            ax.set_yticks([])
            ax.set_ylabel(names[i], rotation=0, ha="right", va="center")
            ax.tick_params(labelsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_knots(results: Mapping[str, Any], path: str | os.PathLike) -> Path | None:
    """``knots.png``: where the first layer's knots lie in the domain, from a results file's ``knots`` group.

    1 input: the predicted solution with a vertical line at each knot; 2 inputs (x, y or x, t): the
    prediction as a colour map with input 0's knots as vertical lines and input 1's as horizontal ones;
    3 or more: one strip per input with its knots over its range.  Only knots inside the evaluation
    points' range are drawn (the k padding knots beyond each end are not).  Returns None, writing
    nothing, when the results have no ``knots`` group (uniform knots) or no ``domain`` entry (a model
    with an input embedding, whose first layer does not see the domain's coordinates).
    """
    fig = knots_figure(results)
    return None if fig is None else _save(fig, path)


def _series_style(series: str, index: dict[str, int]) -> dict[str, Any]:
    """KAN series in cool colours with circles, MLP series in warm colours with squares."""
    is_mlp = series.startswith("MLP")
    palette = ["#c0392b", "#e67e22", "#8e44ad", "#d35400", "#a04000", "#f1c40f"] if is_mlp else \
              ["#1f77b4", "#2ca02c", "#17becf", "#0b3d91", "#4c9a2a", "#7f7fff"]
    i = index.setdefault(("mlp" if is_mlp else "kan"), 0)
    index["mlp" if is_mlp else "kan"] = i + 1
    return {"color": palette[i % len(palette)], "marker": "s" if is_mlp else "o"}


def plot_scaling(
    scaling: Mapping[tuple[str, str], Mapping[str, np.ndarray]],
    fits: Mapping[tuple[str, str], Mapping[str, float]],
    path: str | os.PathLike,
    reference_slope: float = -4.0,
) -> Path:
    """``scaling.png``: MSE and H1² against parameter count (log–log), one row per problem.

    Each series (KAN per width, MLP per depth) shows the median over seeds with min–max bars, a line
    along its best-error frontier and the fitted slope in the legend; a dashed line of slope
    ``reference_slope`` (the KAN paper's N⁻⁴ for cubic splines) starts at the first KAN frontier point.
    """
    problems = sorted({p for p, _ in scaling})
    fig, axes = _figure(len(problems), 2, figsize=(12, 4.6 * len(problems)), squeeze=False)
    for row, problem in zip(axes, problems):
        keys = sorted(s for p, s in scaling if p == problem)
        for ax, err, name in zip(row, ("mse", "h1_sq"), ("MSE (L2 squared)", "H1 squared")):
            style_index: dict = {}
            anchor = None
            kan_n = [float(np.max(scaling[(problem, s)]["n_params"])) for s in keys if not s.startswith("MLP")]
            for series in keys:
                s, fit = scaling[(problem, series)], fits[(problem, series)]
                n, med = s["n_params"], s[f"{err}_median"]
                yerr = np.vstack([med - s[f"{err}_min"], s[f"{err}_max"] - med])
                style = _series_style(series, style_index)
                slope = fit.get(f"slope_{err}", np.nan)
                label = f"{series}: slope {slope:.2f}" if np.isfinite(slope) else f"{series}: no slope (one frontier point)"
                ax.errorbar(n, med, yerr=yerr, fmt=style["marker"], color=style["color"], ms=5, capsize=2,
                            elinewidth=1, ls="none", alpha=0.9)
                order = np.argsort(n)
                best = np.minimum.accumulate(med[order])
                front = med[order] <= best  # running best: the frontier drawn as a line
                ax.plot(n[order][front], med[order][front], "-", color=style["color"], marker=style["marker"], ms=5, label=label)
                if not series.startswith("MLP") and np.isfinite(med).any():
                    first = order[np.isfinite(med[order])][0]
                    if anchor is None or med[first] < anchor[1]:
                        anchor = (float(n[first]), float(med[first]))
            if anchor is not None:
                ns = np.geomspace(anchor[0], max(kan_n), 50)  # over the KAN sizes only, so it does not stretch the axis
                ax.plot(ns, anchor[1] * (ns / anchor[0]) ** reference_slope, "k--", lw=1,
                        label=f"N^{reference_slope:g} (theory, cubic KAN)")
            ax.set(xscale="log", yscale="log", xlabel="number of parameters", ylabel=f"test {name}",
                   title=f"{problem}: {name} vs parameters")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="best")
    fig.suptitle("Scaling: median over seeds, bars min–max; lines join each series' best-error frontier")
    return _save(fig, path)


def plot_dynamics(runs: list[tuple[str, Mapping[str, Any]]], path: str | os.PathLike) -> Path:
    """``dynamics.png``: relative L2 error of each ``(label, history)`` against training step and against wall time."""
    fig, (ax_step, ax_time) = _figure(1, 2, figsize=(13, 4.8))
    extensions: dict[int, int] = {}
    for label, h in runs:
        err = np.asarray(h["rel_l2"], float)
        if not np.isfinite(err).any():
            continue
        line, = ax_step.semilogy(h["step"], err, lw=1.2, label=label)
        ax_time.semilogy(h["time_s"], err, lw=1.2, color=line.get_color())
        for s, g in grid_extensions(h).items():
            extensions.setdefault(s, g)
    _mark_extensions([ax_step], extensions)  # grid extensions of the KAN runs drawn
    ax_step.set(xlabel="training step", ylabel="relative L2 error", title="error against step (grid extensions show as steps)")
    ax_time.set(xlabel="wall time (s)", ylabel="relative L2 error", title="error against wall time")
    for ax in (ax_step, ax_time):
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax_step.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
    return _save(fig, path)
