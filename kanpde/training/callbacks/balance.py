"""Loss balancing: every ``period`` steps each term's weight is reset from the terms' gradients.

* ``grad_norm`` (Wang, Teng & Perdikaris 2021, "learning-rate annealing"; jaxpi's form): with g_t the
  gradient of term t's mean square in the parameters, λ_t = Σ_s |g_s| / |g_t|, so that every term
  pulls on the parameters equally hard.
* ``ntk`` (Wang, Yu & Perdikaris 2022): with tr K_t / n_t the mean over term t's points of
  |∂r_i/∂θ|² (the trace of the term's neural tangent kernel per point), λ_t = Σ_s tr K_s/n_s / (tr K_t/n_t).
  The mean is taken over ``ntk_points`` points of each term drawn afresh each time (all of them
  when the term has fewer), one backward pass per point.

New weights are smoothed, λ <- m·λ + (1 − m)·λ_new (m = ``momentum``; the first update takes λ_new
as it is), multiply each term's objective on top of the problem's fixed weights, and are recorded
in the history as ``weight_<term>``.
"""
from __future__ import annotations

import torch
from torch import nn

from kanpde.pde.problem import Points, Problem
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import LossConfig
from kanpde.training.distributed import Shards
from kanpde.training.state import TrainState


def _norm(grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    """The 2-norm of a gradient given per parameter (None: a parameter the term does not reach)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads if g is not None]))


def grad_norm_weights(problem: Problem, model: nn.Module, points: Points, params: list[nn.Parameter],
                      derivatives: str = "auto", shards: Shards | None = None) -> dict[str, float]:
    """λ_t = Σ_s |∇θ L_s| / |∇θ L_t| for the mean squares L_t of the problem's terms on ``points``.

    Data-parallel (``shards``): each rank differentiates its share of L_t, and the shares' gradients are
    summed over the ranks (one all-reduce) before the norms are taken, so every rank gets one process's weights."""
    squares = problem.pointwise(model, points, derivatives)
    grads = {}
    for t, v in squares.items():
        mean = v.mean() if shards is None else shards.mean(t, v)
        parts = torch.autograd.grad(mean, params, retain_graph=True, allow_unused=True)
        grads[t] = torch.cat([(torch.zeros_like(p) if g is None else g.detach()).reshape(-1) for g, p in zip(parts, params)])
    if shards is not None:
        grads = dict(zip(grads, shards.sum(torch.stack(list(grads.values())))))
    return _ratios({t: torch.linalg.vector_norm(g) for t, g in grads.items()})


def ntk_weights(problem: Problem, model: nn.Module, points: Points, params: list[nn.Parameter], n_points: int,
                generator: torch.Generator | None = None, derivatives: str = "auto") -> dict[str, float]:
    """λ_t = Σ_s k_s / k_t with k_t the mean of |∂r_i/∂θ|² over (up to ``n_points`` of) term t's points.

    |r_i| is the square root of the point's squared residual (a system's equations summed), whose
    gradient is ±∂r_i/∂θ for a single equation.
    """
    paired = problem.paired_terms
    chosen = {t: _subsample(p, n_points, t in paired, generator) for t, p in points.items()}
    squares = problem.pointwise(model, chosen, derivatives)
    traces = {}
    for term, sq in squares.items():
        r = torch.sqrt(sq + torch.finfo(sq.dtype).tiny)
        total = torch.zeros((), dtype=sq.dtype, device=sq.device)
        for i in range(r.shape[0]):
            total = total + _norm(torch.autograd.grad(r[i], params, retain_graph=True, allow_unused=True)) ** 2
        traces[term] = total / r.shape[0]
    return _ratios(traces)


def all_points(points: Points, shards: Shards, paired: set[str]) -> Points:
    """Every rank's points gathered in one process's layout (a paired term's first halves, then its second halves),
    so that every rank subsamples and weighs the terms as one process does (NTK balancing, data-parallel)."""
    out = {}
    for t, p in points.items():
        if t in paired:
            half, n = next(iter(p.values())).shape[0] // 2, shards.counts[t] // 2
            out[t] = {k: torch.cat([shards.gather(v[:half], n), shards.gather(v[half:], n)]) for k, v in p.items()}
        else:
            out[t] = {k: shards.gather(v, shards.counts[t]) for k, v in p.items()}
    return out


def _subsample(p: dict[str, torch.Tensor], n_points: int, paired: bool, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Up to ``n_points`` of one term's points, drawn without replacement.  A periodic condition's points
    come as pairs (first half, second half): those are drawn as pairs."""
    n = next(iter(p.values())).shape[0]
    groups, size = (n // 2, max(1, n_points // 2)) if paired else (n, n_points)
    if groups <= size:
        return p
    idx = torch.randperm(groups, generator=generator)[:size]
    idx = torch.cat([idx, idx + groups]) if paired else idx
    idx = idx.to(next(iter(p.values())).device)
    return {k: v[idx] for k, v in p.items()}


def _ratios(sizes: dict[str, torch.Tensor]) -> dict[str, float]:
    total = float(sum(sizes.values()))
    tiny = torch.finfo(torch.float64).tiny
    return {t: total / max(float(v), tiny) for t, v in sizes.items()}


class LossBalance(Callback):
    """Term weights from the gradients (``trainer.loss.balance``: ``grad_norm`` or ``ntk``)."""

    def __init__(self, config: LossConfig) -> None:
        self.config = config
        self.weights: dict[str, float] = {}
        self.columns: tuple[str, ...] = ()

    def check_problem(self, problem: Problem) -> None:
        if len(problem.terms) < 2:
            raise ValueError(f"trainer.loss.balance={self.config.balance} balances loss terms, and {problem.name} has only "
                             f"{problem.terms}; set trainer.loss.balance=none")
        self.columns = tuple(f"weight_{t}" for t in problem.terms)

    def on_fit_start(self, state: TrainState) -> None:
        self.weights = {t: 1.0 for t in state.problem.terms}

    def on_step_start(self, state: TrainState) -> None:
        if state.step % self.config.balance_period:
            return
        params = [p for p in state.trainable.parameters() if p.requires_grad]
        if self.config.balance == "grad_norm":
            new = grad_norm_weights(state.problem, state.loss_model, state.points, params, state.derivatives, state.shards)
        else:
            generator = torch.Generator().manual_seed(state.step + 1_000_003 * state.seed)
            points = state.points if state.shards is None else all_points(state.points, state.shards, state.problem.paired_terms)
            new = ntk_weights(state.problem, state.loss_model, points, params, self.config.ntk_points, generator,
                              state.derivatives)
        m = self.config.momentum if state.step > 0 else 0.0
        self.weights = {t: m * self.weights[t] + (1 - m) * new[t] for t in self.weights}

    def on_objective(self, state: TrainState, objective: dict[str, torch.Tensor],
                     squares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: v * self.weights[t] for t, v in objective.items()}

    def on_record(self, state: TrainState) -> dict[str, float]:
        return {f"weight_{t}": w for t, w in self.weights.items()}

    def checkpoint_state(self) -> dict:
        return {"weights": dict(self.weights)}

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.weights = dict(saved["weights"])
