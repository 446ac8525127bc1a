"""Figures drawn from a results file: the solution (prediction | exact | error) and the training history."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def plot_solution(results: Mapping[str, Any], path: str | os.PathLike, output: int = 0) -> Path:
    """``solution.png``: prediction, exact solution and pointwise error of one output on the evaluation grid (1-D or 2-D)."""
    ev, attrs = results["eval"], results["attrs"]
    x, pred = np.asarray(ev["x"]), np.asarray(ev["u_pred"])[:, output]
    exact = np.asarray(ev["u_exact"])[:, output] if "u_exact" in ev else None
    title = f"{attrs.get('problem', '')} — {attrs.get('model', '')}, {attrs.get('n_params', '?')} params"
    if x.shape[1] == 1:
        fig, axes = plt.subplots(1, 2 if exact is not None else 1, figsize=(10 if exact is not None else 5, 3.8), squeeze=False, layout="constrained")
        ax = axes[0, 0]
        ax.plot(x[:, 0], pred, label="prediction")
        if exact is not None:
            ax.plot(x[:, 0], exact, "--", label="exact")
            axes[0, 1].semilogy(x[:, 0], np.abs(pred - exact) + 1e-300)
            axes[0, 1].set(xlabel="x", ylabel="|error|", title="pointwise error")
        ax.set(xlabel="x", ylabel="u", title="solution")
        ax.legend()
    elif x.shape[1] == 2:
        n = int(round(np.sqrt(x.shape[0])))
        if n * n != x.shape[0]:
            raise ValueError(f"plot_solution: 2-D evaluation points must form a square grid, got {x.shape[0]} points")
        X, Y = x[:, 0].reshape(n, n), x[:, 1].reshape(n, n)
        panels = [("prediction", pred)]
        if exact is not None:
            panels += [("exact", exact), ("|error|", np.abs(pred - exact))]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.9), squeeze=False, layout="constrained")
        for ax, (name, val) in zip(axes[0], panels):
            mesh = ax.pcolormesh(X, Y, val.reshape(n, n), shading="auto", cmap="magma" if name == "|error|" else "viridis")
            fig.colorbar(mesh, ax=ax)
            ax.set(xlabel="x", ylabel="y", title=name, aspect="equal")
    else:
        raise ValueError(f"plot_solution draws 1-D and 2-D problems, got {x.shape[1]} inputs")
    fig.suptitle(title)
    return _save(fig, path)


def plot_history(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """``history.png``: total and per-term loss, and the relative L2 error, against the training step."""
    h = results["history"]
    step = np.asarray(h["step"])
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    ax_loss.semilogy(step, h["loss"], label="loss (weighted)", color="black")
    for key in sorted(k for k in h if k.startswith("loss_")):
        ax_loss.semilogy(step, h[key], label=key[5:], alpha=0.7)
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.legend(fontsize=8)
    if "rel_l2" in h and np.isfinite(h["rel_l2"]).any():
        ax_err.semilogy(step, h["rel_l2"], color="tab:red")
    ax_err.set(xlabel="step", ylabel="relative L2 error", title="error on the evaluation grid")
    if "grid" in h and len(h["grid"]) > 1:
        grid = np.asarray(h["grid"])
        for i in np.nonzero(np.diff(grid))[0]:
            for ax in (ax_loss, ax_err):
                ax.axvline(step[i + 1], color="grey", ls=":", lw=1)
            ax_err.annotate(f"G={int(grid[i + 1])}", (step[i + 1], 0.98), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    for ax in (ax_loss, ax_err):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{results['attrs'].get('problem', '')} — {results['attrs'].get('model', '')}")
    return _save(fig, path)
