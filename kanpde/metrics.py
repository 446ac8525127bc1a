"""Errors of a prediction against a reference on an evaluation set."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def relative_l2(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """||pred - ref||_2 / ||ref||_2 over all points and outputs. pred, ref: (n, n_out)."""
    return torch.linalg.vector_norm(pred - ref) / torch.linalg.vector_norm(ref)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Model outputs at x: (n, dim) -> (n, n_out), evaluated ``chunk`` points at a time so that a
    10^6-point grid needs only one chunk's activations in memory."""
    if x.shape[0] <= chunk:
        return model(x)
    return torch.cat([model(xc) for xc in torch.split(x, chunk)])


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (n, n_out) and input gradients (n, n_out, dim) of ``fn`` at x: (n, dim)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        grads = []
        for o in range(y.shape[1]):
            g = torch.autograd.grad(y[:, o].sum(), x, retain_graph=True, allow_unused=True)[0] if y.requires_grad else None
            grads.append(torch.zeros_like(x) if g is None else g)  # an output that ignores x has zero gradient
        g = torch.stack(grads, dim=1)
    return y.detach(), g.detach()


def errors(model: nn.Module, exact: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 65536) -> dict[str, float]:
    """Errors of ``model`` against ``exact`` on the points x: (n, dim).

    Returns ``rel_l2`` (relative L2), ``mse`` (mean squared error, the KAN paper's "L2 squared"),
    ``h1_sq`` (mse plus the mean squared error of the gradient, the paper's "H1 squared") and
    ``max_abs_err``, all means over the points (and outputs).  Evaluated in chunks of ``chunk`` points.
    """
    sq = gsq = ref_sq = 0.0
    max_abs = 0.0
    n_values = 0
    for xc in torch.split(x, chunk):
        u, du = _grad(model, xc)
        v, dv = _grad(exact, xc)
        diff = u - v
        sq += diff.square().sum().item()
        gsq += (du - dv).square().sum(dim=2).sum().item()
        ref_sq += v.square().sum().item()
        max_abs = max(max_abs, diff.abs().max().item())
        n_values += diff.numel()
    mse = sq / n_values
    rel = (sq / ref_sq) ** 0.5 if ref_sq > 0 else (0.0 if sq == 0 else float("inf"))  # undefined for u = 0
    return {"rel_l2": rel, "mse": mse, "h1_sq": mse + gsq / n_values, "max_abs_err": max_abs}
