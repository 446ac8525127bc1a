"""Residual-based adaptive distribution sampling (RAD; Wu et al. 2023, CMAME, "A comprehensive study
of non-adaptive and residual-based adaptive sampling for PINNs"): every ``period`` steps the PDE points
are redrawn from a uniform candidate pool with density ~ |r|^k / mean |r|^k + c."""
from __future__ import annotations

import torch

from kanpde import checks
from kanpde.pde.problem import Problem
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import SamplerConfig
from kanpde.training.optimizers import takes_closure
from kanpde.training.quasi_newton import QuasiNewton
from kanpde.training.state import TrainState


def rad_probabilities(residual: torch.Tensor, k: float, c: float) -> torch.Tensor:
    """RAD sampling probabilities p_i ∝ |r_i|^k / mean(|r|^k) + c, summing to 1. residual: (m,) -> (m,).

    k = 0 gives uniform sampling; larger k concentrates on large residuals, larger c flattens toward
    uniform. If every weight is zero (c = 0 and all r = 0) the result is uniform. No gradient flows.
    """
    r = checks.vector("residual", residual).detach()
    k = checks.number_in("k", k, 0.0)
    c = checks.number_in("c", c, 0.0)
    if r.numel() == 0:
        raise ValueError("residual must be non-empty, got shape (0,)")
    if not r.is_floating_point():
        r = r.to(torch.get_default_dtype())
    if not bool(torch.isfinite(r).all()):
        raise ValueError("residual must be finite, got NaN or inf entries")
    a = r.abs()
    top = a.max()
    if top > 0:
        a = a / top  # scale-free, and keeps |r|^k from overflowing for large k
    w = a.pow(k)  # 0**0 == 1, so k = 0 is uniform even where r = 0
    mean = w.mean()
    if mean > 0:
        w = w / mean
    w = w + c
    total = w.sum()
    if not total > 0:
        return torch.full_like(w, 1.0 / w.numel())
    return w / total


def rad_resample(pool: torch.Tensor, residual: torch.Tensor, n: int, k: float, c: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw n distinct points from a candidate pool with RAD probabilities (without replacement).

    pool: (m, dim), residual: (m,) at the pool points -> (points (n, dim), indices (n,) into pool).
    """
    if not isinstance(pool, torch.Tensor) or pool.ndim != 2:
        shape = tuple(pool.shape) if isinstance(pool, torch.Tensor) else type(pool).__name__
        raise ValueError(f"pool must be a tensor of shape (m, dim), got {shape}")
    checks.vector("residual", residual)
    if residual.shape[0] != pool.shape[0]:
        raise ValueError(f"residual must have shape ({pool.shape[0]},) to match pool, got {tuple(residual.shape)}")
    n = checks.positive_int("n", n, 1)
    m = pool.shape[0]
    if n > m:
        raise ValueError(f"n={n} points cannot be drawn without replacement from a pool of m={m}")
    p = rad_probabilities(residual, k, c)
    positive = int((p > 0).sum())
    if positive < n:
        raise ValueError(f"n={n} points cannot be drawn without replacement: only {positive} of m={m} pool points "
                         f"have nonzero probability (use c > 0)")
    idx = torch.multinomial(p, n, replacement=False, generator=generator)
    return pool[idx], idx


class RAD(Callback):
    """Redraws the PDE points every ``config.period`` steps (not at step 0); the run seed and the step
    seed the candidate pool and the draw, so a seed sweep draws differently in every run."""

    def __init__(self, config: SamplerConfig, chunk: int = 8192) -> None:
        self.config, self.chunk = config, chunk

    def check_problem(self, problem: Problem) -> None:
        # every problem has PDE points (Problem refuses n_interior < 1), so RAD always has a term to redraw
        if self.config.pool < problem.n_interior:
            raise ValueError(f"trainer.sampler.pool={self.config.pool} must be at least problem.n_interior={problem.n_interior} "
                             f"(points are drawn without replacement)")

    def draw(self, state: TrainState) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A uniform candidate pool, its PDE residuals |r| and the indices of the points drawn from it.

        Data-parallel, every rank draws the same pool (it is seeded), evaluates its share of it, gathers
        the residuals of the whole pool, and so draws the same points as one process; it then keeps its
        share of them (:meth:`on_step_start`)."""
        x = state.points["pde"]["x"]
        pool_seed = 7919 * state.step + 104729 * state.seed  # seed 0 draws what kanpde drew before seeds counted
        pool = state.problem.domain.sample_interior(self.config.pool, "uniform", pool_seed).to(device=x.device, dtype=x.dtype)
        shards = state.shards
        mine = pool if shards is None else torch.tensor_split(pool, shards.size)[shards.rank]
        with torch.enable_grad():  # nested autograd needs a graph; the forward back end does not mind
            residual = torch.cat([state.problem.pde_pointwise(state.loss_model, xc, state.derivatives).detach()
                                  for xc in torch.split(mine, self.chunk)]).sqrt()
        if shards is not None:
            residual = shards.gather(residual, len(pool))
        generator = torch.Generator(device=x.device).manual_seed(state.step + 1_000_003 * state.seed)
        n = x.shape[0] if shards is None else shards.counts["pde"]
        _, chosen = rad_resample(pool, residual, n, self.config.k, self.config.c, generator)
        return pool, residual, chosen

    def on_step_start(self, state: TrainState) -> None:
        if state.step == 0 or state.step % self.config.period:
            return
        pool, residual, chosen = self.draw(state)
        if state.shards is not None:  # this rank's share of the drawn points, split as the points first were
            chosen = torch.tensor_split(chosen, state.shards.size)[state.shards.rank]
        state.points["pde"] = {"x": pool[chosen]}
        state.callbacks.call("on_resample", state, "pde", residual[chosen], residual.max())
        if isinstance(state.optimizer, QuasiNewton) and self.config.keep_curvature:
            state.optimizer.new_objective()  # s and y of every later update come from the new points alone
        elif takes_closure(state.optimizer):  # its curvature memory belongs to the old points
            state.new_optimizer()
