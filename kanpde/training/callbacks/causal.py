"""Causal training (Wang, Sankaran & Perdikaris 2022, "Respecting causality is all you need"): the PDE
term of a time-dependent problem becomes the mean over time slabs of w_i*L_i, w_i = exp(-eps*sum_{j<i} L_j)."""
from __future__ import annotations

import math

import torch

from kanpde import checks
from kanpde.geometry import TimeDomain
from kanpde.pde.problem import Problem
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import CausalConfig
from kanpde.training.state import TrainState


def slab_index(t: torch.Tensor, t0: float, t1: float, slabs: int) -> torch.Tensor:
    """Which of ``slabs`` equal time slabs of [t0, t1] each time lies in. t: (n,) -> LongTensor (n,).

    Slab i is [t0 + i·h, t0 + (i+1)·h) with h = (t1 - t0) / slabs, its edges rounded to t's dtype, so a
    time exactly on an edge starts the later slab; t = t1 belongs to the last slab.
    """
    checks.vector("t", t)
    t0 = checks.number_in("t0", t0, -math.inf)
    t1 = checks.number_in("t1", t1, -math.inf)
    if not t1 > t0:
        raise ValueError(f"t1 must be > t0, got t0={t0:g}, t1={t1:g}")
    slabs = checks.positive_int("slabs", slabs, 1)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.numel() and not bool(((t >= t0) & (t <= t1)).all()):
        bad = t[~((t >= t0) & (t <= t1))]
        raise ValueError(f"t must lie in [t0, t1] = [{t0:g}, {t1:g}], got {bad.numel()} values outside "
                         f"(e.g. {bad[0].item():g})")
    edges = (t0 + (t1 - t0) * torch.arange(1, slabs, dtype=torch.float64) / slabs).to(t.dtype).to(t.device)
    return torch.bucketize(t.contiguous(), edges, right=True)


def slab_means(values: torch.Tensor, index: torch.Tensor, slabs: int) -> torch.Tensor:
    """Mean of values in each slab, differentiable in values. values: (n,), index: LongTensor (n,) -> (slabs,).

    An empty slab has mean 0 (and contributes no gradient).
    """
    checks.vector("values", values)
    checks.vector("index", index)
    if index.dtype != torch.long:
        raise ValueError(f"index must be a LongTensor, got dtype {index.dtype}")
    if index.shape != values.shape:
        raise ValueError(f"index must have the shape of values {tuple(values.shape)}, got {tuple(index.shape)}")
    slabs = checks.positive_int("slabs", slabs, 1)
    if index.numel():
        lo, hi = (int(v) for v in torch.aminmax(index))
        if lo < 0 or hi >= slabs:
            raise ValueError(f"index must lie in [0, {slabs - 1}] for slabs={slabs}, got values in [{lo}, {hi}]")
    sums = values.new_zeros(slabs).index_add(0, index, values)
    counts = values.new_zeros(slabs).index_add(0, index, torch.ones_like(values.detach()))
    return sums / counts.clamp_min(1.0)


def causal_weights(slab_losses: torch.Tensor, eps: float) -> torch.Tensor:
    """Causal weights w_i = exp(-eps · Σ_{j<i} L_j), w_0 = 1. slab_losses: (slabs,) -> (slabs,).

    Computed on detached losses: the weights are constants to the optimiser, as in the paper, so a slab
    is not "solved" by inflating the earlier slabs' losses.
    """
    checks.vector("slab_losses", slab_losses)
    eps = checks.number_in("eps", eps, 0.0)
    losses = slab_losses.detach()
    before = torch.cumsum(losses, 0) - losses  # exclusive prefix sum Σ_{j<i} L_j
    return torch.exp(-eps * before)


def causal_loss(values: torch.Tensor, index: torch.Tensor, slabs: int,
                eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Causally weighted loss mean_i(w_i · L_i), L = per-slab means of values.

    values: (n,) per-point losses (e.g. squared residuals), index: LongTensor (n,) from ``slab_index``
    -> (scalar loss, weights (slabs,) without gradient, for logging).
    """
    losses = slab_means(values, index, slabs)
    weights = causal_weights(losses, eps)
    return (weights * losses).mean(), weights


class CausalWeights(Callback):
    """Causal slab weights on the PDE term (history column ``causal_min_weight``); time is the last input."""

    columns = ("causal_min_weight",)

    def __init__(self, config: CausalConfig) -> None:
        self.config = config
        self.slabs: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def check_problem(self, problem: Problem) -> None:
        if not isinstance(problem.domain, TimeDomain):
            raise ValueError(f"trainer.loss.causal.eps={self.config.eps} weights time slabs, and {problem.name} has no time input; set it to 0")

    def _index(self, state: TrainState) -> torch.Tensor:
        dom = state.problem.domain
        return slab_index(state.points["pde"]["x"][:, -1], dom.t0, dom.t1, self.config.slabs)

    def on_fit_start(self, state: TrainState) -> None:
        self.slabs = self._index(state)

    def on_objective(self, state: TrainState, objective: dict[str, torch.Tensor],
                     squares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if state.shards is None:
            objective["pde"], self.weights = causal_loss(squares["pde"], self.slabs, self.config.slabs, self.config.eps)
            return objective
        # data-parallel: the slab means and weights are the global ones; this rank adds its share of each slab's mean
        values, n = squares["pde"], self.config.slabs
        sums = values.new_zeros(n).index_add(0, self.slabs, values)
        counts = state.shards.sum(values.new_zeros(n).index_add(0, self.slabs, torch.ones_like(values.detach()))).clamp_min(1.0)
        self.weights = causal_weights(state.shards.sum(sums) / counts, self.config.eps)
        objective["pde"] = (self.weights * sums / counts).mean()
        return objective

    def on_record(self, state: TrainState) -> dict[str, float]:
        return {"causal_min_weight": float(self.weights.min())}

    def on_resample(self, state: TrainState, term: str, residual: torch.Tensor, residual_max: torch.Tensor) -> None:
        self.slabs = self._index(state)

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.slabs = self._index(state)  # from the checkpoint's points
