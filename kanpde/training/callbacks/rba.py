"""Residual-based attention (RBA; Anagnostopoulos et al. 2024): per-point weights lam on the squared
residuals, loss mean((lam*r)^2), lam <- gamma*lam + eta*q(r) after every step, with q(r) = |r|/max|r|
(the linear potential of the original method) or the exponential potential of vRBA (Toscano et al. 2025,
arXiv 2509.14198): q = exp((|r| - max|r|)/eps), eps = c*max|r|/ln(step + 2), which weighs toward the
largest residuals more sharply as training goes on (it targets the uniform error rather than the mean)."""
from __future__ import annotations

import math

import torch

from kanpde import checks
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import RBA_POTENTIALS, LossConfig
from kanpde.training.state import TrainState


def attention_target(a: torch.Tensor, top: torch.Tensor, potential: str = "linear", step: int = 0, c: float = 1.0) -> torch.Tensor:
    """q(|r|) in [0, 1], largest where |r| = max|r|: ``linear`` |r|/max|r| (0 where max|r| = 0), or
    ``exponential`` exp((|r| - max|r|)/eps) with eps = c*max|r|/ln(step + 2), i.e. (step + 2)^((|r|/max|r| - 1)/c)
    (1 where max|r| = 0: no point stands out). a: (n,) magnitudes, top: () their maximum (or a larger one)."""
    tiny = torch.finfo(a.dtype).tiny
    ratio = a / top.clamp_min(tiny)  # max|r| = 0 means every |r| is 0: ratio 0
    if potential == "linear":
        return ratio
    if potential == "exponential":
        ratio = torch.where(top > 0, ratio, torch.ones_like(ratio))
        return torch.exp((ratio - 1) * (math.log(step + 2) / c))
    raise ValueError(f"potential must be one of {', '.join(RBA_POTENTIALS)}, got {potential!r}")


@torch.no_grad()
def rba_update(weights: torch.Tensor, residual: torch.Tensor, gamma: float, eta: float,
               top: torch.Tensor | None = None, potential: str = "linear", step: int = 0, c: float = 1.0) -> torch.Tensor:
    """One RBA step λ <- γ·λ + η·q(|r|) (:func:`attention_target`; linear: only the decay if max|r| = 0).
    weights, residual: (n,) -> (n,).

    ``top`` is max|r| when it is taken over more points than these (all ranks' in data-parallel training);
    ``step`` and ``c`` set the exponential potential's sharpness. Out of place and without gradient.
    Synchronisation-free, so a NaN residual propagates into the weights rather than raising.
    """
    checks.vector("weights", weights)
    checks.vector("residual", residual)
    if not weights.is_floating_point():
        raise ValueError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
    if residual.shape != weights.shape:
        raise ValueError(f"residual must have the shape of weights {tuple(weights.shape)}, got {tuple(residual.shape)}")
    gamma = checks.number_in("gamma", gamma, 0.0, 1.0, high_open=True)
    eta = checks.number_in("eta", eta, 0.0, low_open=True)
    c = checks.number_in("c", c, 0.0, low_open=True)
    a = residual.detach().abs().to(weights.dtype)
    if a.numel() == 0:
        return weights.detach().clone()
    top = a.max() if top is None else top.to(a.dtype)
    return gamma * weights.detach() + eta * attention_target(a, top, potential, step, c)


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
        cfg = self.config
        for t in state.attention:
            r = state.first_squares[t].sqrt()
            top = None if state.shards is None else state.shards.max(r.abs().max())  # max |r| over every rank's points
            state.attention[t] = rba_update(state.attention[t], r, cfg.gamma, cfg.eta, top, cfg.rba_potential, state.step, cfg.rba_c)

    def on_resample(self, state: TrainState, term: str, residual: torch.Tensor, residual_max: torch.Tensor) -> None:
        if term in state.attention:  # the new points' weights start where the update would settle on them
            cfg = self.config
            q = attention_target(residual.abs(), residual_max, cfg.rba_potential, state.step, cfg.rba_c)
            state.attention[term] = cfg.eta / (1 - cfg.gamma) * q
