"""Residual-based attention (RBA; Anagnostopoulos et al. 2024): per-point weights lam on the squared
residuals, loss mean((lam*r)^2), lam <- gamma*lam + eta*|r|/max|r| after every step."""
from __future__ import annotations

import torch

from kanpde import checks
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import LossConfig
from kanpde.training.state import TrainState


@torch.no_grad()
def rba_update(weights: torch.Tensor, residual: torch.Tensor, gamma: float, eta: float,
               top: torch.Tensor | None = None) -> torch.Tensor:
    """One RBA step λ <- γ·λ + η·|r| / max|r| (only the decay if max|r| = 0). weights, residual: (n,) -> (n,).

    ``top`` is max|r| when it is taken over more points than these (all ranks' in data-parallel training).
    Out of place and without gradient. Synchronisation-free, so a NaN residual propagates into the weights
    rather than raising.
    """
    checks.vector("weights", weights)
    checks.vector("residual", residual)
    if not weights.is_floating_point():
        raise ValueError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if residual.shape != weights.shape:
        raise ValueError(f"residual must have the shape of weights {tuple(weights.shape)}, got {tuple(residual.shape)}")
    gamma = checks.number_in("gamma", gamma, 0.0, 1.0, high_open=True)
    eta = checks.number_in("eta", eta, 0.0, low_open=True)
    a = residual.detach().abs().to(weights.dtype)
    if a.numel() == 0:
        return weights.detach().clone()
    # If max|r| = 0 every |r| is 0, so dividing by a tiny positive number gives 0: the decay-only case.
    top = (a.max() if top is None else top.to(a.dtype)).clamp_min(torch.finfo(a.dtype).tiny)
    return gamma * weights.detach() + eta * (a / top)


class ResidualAttention(Callback):
    """RBA weights on the PDE term (and every condition term with ``config.rba_boundary``); the
    final weights end in ``TrainResult.attention``.  Logged ``loss_<term>`` stay the plain means."""

    def __init__(self, config: LossConfig) -> None:
        self.config = config

    def on_fit_start(self, state: TrainState) -> None:
        state.attention = {t: torch.ones(len(next(iter(p.values()))), device=state.device, dtype=state.dtype)
                           for t, p in state.points.items() if t == "pde" or self.config.rba_boundary}

    def on_squares(self, state: TrainState, squares: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {t: state.attention[t].square() * v if t in state.attention else v for t, v in squares.items()}

    def on_step_end(self, state: TrainState) -> None:
        for t in state.attention:
            r = state.first_squares[t].sqrt()
            top = None if state.shards is None else state.shards.max(r.abs().max())  # max |r| over every rank's points
            state.attention[t] = rba_update(state.attention[t], r, self.config.gamma, self.config.eta, top)

    def on_resample(self, state: TrainState, term: str, residual: torch.Tensor, residual_max: torch.Tensor) -> None:
        if term in state.attention:  # the new points' weights start where the update would settle on them
            tiny = torch.finfo(state.dtype).tiny
            state.attention[term] = self.config.eta / (1 - self.config.gamma) * residual / residual_max.clamp_min(tiny)
