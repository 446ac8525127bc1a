"""Where and how much a physics-informed loss looks: pure tensor functions, no trainer or model code.

- Residual-based adaptive distribution sampling (RAD; Wu et al. 2023, CMAME, "A comprehensive study of
  non-adaptive and residual-based adaptive sampling for PINNs"): ``rad_probabilities``, ``rad_resample``.
- Residual-based attention (RBA; Anagnostopoulos et al. 2024): ``rba_update``.
- Causal training (Wang, Sankaran & Perdikaris 2022, "Respecting causality is all you need"):
  ``slab_index``, ``slab_means``, ``causal_weights``, ``causal_loss``.
- Learning-rate schedules as a multiplicative factor: ``lr_factor``.
- Adam moments carried across a linear re-parametrisation (KAN grid extension): ``apply_along``,
  ``project_adam_state``.
"""
from __future__ import annotations

import math
from numbers import Integral

import torch

from . import checks

DECAYS = ("none", "exponential", "cosine")


def _check_vector(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 1-D tensor of shape (n,), got {shape}")
    return x


# --------------------------------------------------------------------------- RAD

def rad_probabilities(residual: torch.Tensor, k: float, c: float) -> torch.Tensor:
    """RAD sampling probabilities p_i ∝ |r_i|^k / mean(|r|^k) + c, summing to 1. residual: (m,) -> (m,).

    k = 0 gives uniform sampling; larger k concentrates on large residuals, larger c flattens toward
    uniform. If every weight is zero (c = 0 and all r = 0) the result is uniform. No gradient flows.
    """
    r = _check_vector("residual", residual).detach()
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
    _check_vector("residual", residual)
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


# --------------------------------------------------------------------------- RBA

@torch.no_grad()
def rba_update(weights: torch.Tensor, residual: torch.Tensor, gamma: float, eta: float) -> torch.Tensor:
    """One RBA step λ <- γ·λ + η·|r| / max|r| (only the decay if max|r| = 0). weights, residual: (n,) -> (n,).

    Out of place and without gradient. Synchronisation-free, so a NaN residual propagates into the weights
    rather than raising.
    """
    _check_vector("weights", weights)
    _check_vector("residual", residual)
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
    top = a.max().clamp_min(torch.finfo(a.dtype).tiny)
    return gamma * weights.detach() + eta * (a / top)


# --------------------------------------------------------------------------- causal training

def slab_index(t: torch.Tensor, t0: float, t1: float, slabs: int) -> torch.Tensor:
    """Which of ``slabs`` equal time slabs of [t0, t1] each time lies in. t: (n,) -> LongTensor (n,).

    Slab i is [t0 + i·h, t0 + (i+1)·h) with h = (t1 - t0) / slabs, its edges rounded to t's dtype, so a
    time exactly on an edge starts the later slab; t = t1 belongs to the last slab.
    """
    _check_vector("t", t)
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
    _check_vector("values", values)
    _check_vector("index", index)
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
    _check_vector("slab_losses", slab_losses)
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


# --------------------------------------------------------------------------- learning rate

def lr_factor(step: int, warmup: int = 0, decay: str = "none", decay_steps: int = 1, decay_rate: float = 1.0,
              total: int | None = None, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based).

    Linear warm-up (step + 1) / warmup while step < warmup, then with s = step - warmup:
    ``none`` 1; ``exponential`` decay_rate ** (s / decay_steps); ``cosine``
    min_factor + (1 - min_factor)·½(1 + cos(π·s / (total - warmup))), held at min_factor from ``total`` on.
    """
    step = checks.positive_int("step", step, 0)
    warmup = checks.positive_int("warmup", warmup, 0)
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    decay_steps = checks.positive_int("decay_steps", decay_steps, 1)
    decay_rate = checks.number_in("decay_rate", decay_rate, 0.0, 1.0, low_open=True)
    min_factor = checks.number_in("min_factor", min_factor, 0.0, 1.0)
    if decay == "cosine":
        if total is None:
            raise ValueError("total must be given for decay='cosine', got None")
        total = checks.positive_int("total", total, 1)
        if total <= warmup:
            raise ValueError(f"total must be > warmup={warmup} for decay='cosine', got {total}")
    elif total is not None:
        total = checks.positive_int("total", total, 1)
    if step < warmup:
        return (step + 1) / warmup
    s = step - warmup
    if decay == "exponential":
        return decay_rate ** (s / decay_steps)
    if decay == "cosine":
        progress = min(s / (total - warmup), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


# --------------------------------------------------------------------------- Adam state projection

def apply_along(P: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Map axis ``dim`` of x by the batched matrix P: out[b..., :, rest...] = P[b...] @ x[b..., :, rest...].

    P: (batch..., K', K), whose batch dimensions broadcast against x.shape[:dim]; x: (batch..., K, rest...)
    -> (batch..., K', rest...). P is cast to x's dtype and device.
    """
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        raise ValueError(f"x must be a tensor with at least one dimension, got {type(x).__name__}")
    if not isinstance(dim, Integral) or isinstance(dim, bool) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be an integer in [{-x.ndim}, {x.ndim - 1}] for x of shape {tuple(x.shape)}, "
                         f"got {dim!r}")
    dim = int(dim) % x.ndim
    if not isinstance(P, torch.Tensor) or P.ndim < 2 or P.shape[-1] != x.shape[dim]:
        shape = tuple(P.shape) if isinstance(P, torch.Tensor) else type(P).__name__
        raise ValueError(f"P must have shape (batch..., K', {x.shape[dim]}), got {shape}")
    batch = tuple(x.shape[:dim])
    try:
        ok = torch.broadcast_shapes(tuple(P.shape[:-2]), batch) == batch
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"P's batch dimensions {tuple(P.shape[:-2])} must broadcast to x.shape[:dim] = {batch}")
    rest = tuple(x.shape[dim + 1:])
    cols = x.reshape(*batch, x.shape[dim], -1)
    out = P.to(dtype=x.dtype, device=x.device) @ cols
    return out.reshape(*batch, P.shape[-2], *rest)


_FIRST_MOMENTS = ("exp_avg",)
_SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")


@torch.no_grad()
def project_adam_state(state: dict, P: torch.Tensor, dim: int = 1) -> dict:
    """Carry one parameter's ``torch.optim.Adam`` state across the linear map new = P @ old along ``dim``.

    state: {"step", "exp_avg", "exp_avg_sq", optionally "max_exp_avg_sq"} for a tensor whose axis ``dim``
    goes from K to K'; P: (batch..., K', K) as in ``apply_along`` (for KAN coefficients (in, K, out),
    P is (in, K', K) and dim = 1). exp_avg maps exactly like the parameter. The second moments map with
    P**2 (elementwise): if the old gradient entries were independent with second moments v, the
    combination Σ_k P_jk g_k has second moment Σ_k P_jk² v_k. Unlike P @ v this stays non-negative, which
    Adam's sqrt needs. ``step`` and any other entries are copied unchanged; an empty state stays empty.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict (one parameter's Adam state), got {type(state).__name__}")
    if not state:
        return {}
    for key in ("exp_avg", "exp_avg_sq"):
        if not isinstance(state.get(key), torch.Tensor):
            raise ValueError(f"state must hold a tensor {key!r}, got keys {sorted(state)}")
    shape = state["exp_avg"].shape
    for key in _SECOND_MOMENTS:
        if key in state and state[key].shape != shape:
            raise ValueError(f"state[{key!r}] must have the shape of exp_avg {tuple(shape)}, "
                             f"got {tuple(state[key].shape)}")
    if not isinstance(P, torch.Tensor):
        raise ValueError(f"P must be a tensor of shape (batch..., K', K), got {type(P).__name__}")
    P = P.detach()
    new: dict = {}
    for key, value in state.items():
        if key in _FIRST_MOMENTS:
            new[key] = apply_along(P, value, dim)
        elif key in _SECOND_MOMENTS:
            new[key] = apply_along(P * P, value, dim)
        else:
            new[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return new
