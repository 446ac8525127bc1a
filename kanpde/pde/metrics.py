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


class _Sums:
    """Running sums over chunks of points, per output: what the error measures are made of."""

    def __init__(self) -> None:
        self.sq = self.ref_sq = self.gsq = None
        self.max_abs = 0.0
        self.n_points = 0

    def add(self, diff: torch.Tensor, ref: torch.Tensor, grad_diff: torch.Tensor | None = None) -> None:
        """diff, ref: (n, n_out); grad_diff: (n, n_out, dim) or None."""
        sq, ref_sq = diff.square().sum(dim=0).double(), ref.square().sum(dim=0).double()
        self.sq = sq if self.sq is None else self.sq + sq
        self.ref_sq = ref_sq if self.ref_sq is None else self.ref_sq + ref_sq
        if grad_diff is not None:
            gsq = grad_diff.square().sum(dim=(0, 2)).double()
            self.gsq = gsq if self.gsq is None else self.gsq + gsq
        self.max_abs = max(self.max_abs, diff.abs().max().item())
        self.n_points += diff.shape[0]

    def result(self) -> dict[str, float | list[float]]:
        def rel(sq: float, ref: float) -> float:
            return (sq / ref) ** 0.5 if ref > 0 else (0.0 if sq == 0 else float("inf"))  # undefined for u = 0

        sq, ref = self.sq.tolist(), self.ref_sq.tolist()
        n_values = self.n_points * len(sq)
        mse = sum(sq) / n_values
        out: dict[str, float | list[float]] = {
            "rel_l2": rel(sum(sq), sum(ref)),  # pooled over all outputs
            "mse": mse,
            "h1_sq": mse + float(self.gsq.sum()) / n_values if self.gsq is not None else float("nan"),
            "max_abs_err": self.max_abs,
            "rel_l2_outputs": [rel(a, b) for a, b in zip(sq, ref)],  # one per output (PINNacle's L2RE per field)
        }
        return out


def errors(model: nn.Module, exact: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 65536) -> dict[str, float | list[float]]:
    """Errors of ``model`` against ``exact`` on the points x: (n, dim).

    Returns ``rel_l2`` (relative L2, pooled over all outputs), ``rel_l2_outputs`` (one per
    output), ``mse`` (mean squared error, the KAN paper's "L2 squared"), ``h1_sq`` (mse plus the
    mean squared error of the gradient, the paper's "H1 squared") and ``max_abs_err``, all means
    over the points (and outputs).  Evaluated in chunks of ``chunk`` points.
    """
    sums = _Sums()
    for xc in torch.split(x, chunk):
        u, du = _grad(model, xc)
        v, dv = _grad(exact, xc)
        sums.add(u - v, v, du - dv)
    return sums.result()


def errors_against(model: nn.Module, x: torch.Tensor, u_ref: torch.Tensor, chunk: int = 65536) -> dict[str, float | list[float]]:
    """As :func:`errors`, against reference values u_ref: (n, n_out) at x: (n, dim) (no gradient,
    so ``h1_sq`` is NaN)."""
    if u_ref.ndim != 2 or u_ref.shape[0] != x.shape[0]:
        raise ValueError(f"u_ref must have shape ({x.shape[0]}, n_out), got {tuple(u_ref.shape)}")
    sums = _Sums()
    for xc, uc in zip(torch.split(x, chunk), torch.split(u_ref, chunk)):
        sums.add(predict(model, xc) - uc, uc)
    return sums.result()
