"""Collocation-point sampling helpers shared by every domain: the samplers, seeded generators and Monte Carlo volumes.

All functions return float64 CPU arrays or tensors; the trainer moves points to its own dtype and device.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch


SAMPLERS = ("uniform", "sobol", "halton", "lhs")

MC_POINTS = 2**18
"""Sobol points (fixed seed 0) behind every Monte Carlo volume estimate, see :meth:`Domain.measure`."""

MIN_ACCEPTANCE = 1e-4
"""Rejection sampling from the bounding box refuses domains filling less than this fraction of it."""

MAX_BATCH = 1 << 20  # candidates drawn at once by rejection samplers


def make_engine(cls, dim: int, rng: np.random.Generator, **kwargs):
    """Build a scipy QMC engine seeded by ``rng`` (scipy >= 1.15 calls it ``rng``, older ``seed``)."""
    try:
        return cls(dim, rng=rng, **kwargs)
    except TypeError:
        return cls(dim, seed=rng, **kwargs)


def check_method(method: str) -> str:
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}; got {method!r}")
    return method


def unit_samples(n: int, dim: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points in the unit cube [0, 1)^dim with ``method``; returns (n, dim) float64."""
    check_method(method)
    if method == "uniform":
        return rng.random((n, dim))
    from scipy.stats import qmc  # a second's import, paid only by the quasi-random samplers

    if method == "sobol":
        engine = make_engine(qmc.Sobol, dim, rng, scramble=True)
    elif method == "halton":
        engine = make_engine(qmc.Halton, dim, rng, scramble=True)
    else:
        engine = make_engine(qmc.LatinHypercube, dim, rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        return np.asarray(engine.random(n), dtype=np.float64)


def seeded_rng(seed: int | None, *extra: int) -> np.random.Generator:
    """Deterministic generator from ``seed`` (and sub-stream indices); fresh entropy if seed is None."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), *extra]) if extra else np.random.default_rng(seed)


def subseed(seed: int | None, *extra: int) -> int | None:
    """An integer seed for a sub-sampler, derived from ``seed`` and ``extra``; None stays None."""
    return None if seed is None else int(seeded_rng(seed, *extra).integers(2**62))


def random_pairing(n: int, method: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` one-dimensional unit samples in random order, (n,).

    Two separately scrambled Sobol (or Halton) sequences paired index by index are functions of
    the same index, so the pairs fall on a curve; shuffling one of them keeps its stratified
    marginal and makes the pairing random.
    """
    return unit_samples(n, 1, method, rng)[rng.permutation(n), 0]


def mc_volume(inside: Callable[[torch.Tensor], torch.Tensor], lower: torch.Tensor, upper: torch.Tensor) -> float:
    """Monte Carlo volume of {x in [lower, upper] : inside(x)} from ``MC_POINTS`` Sobol points, seed 0."""
    extent = upper - lower
    if not bool((extent > 0).all()):
        return 0.0
    u = torch.from_numpy(unit_samples(MC_POINTS, lower.numel(), "sobol", seeded_rng(0)))
    return float(inside(lower + u * extent).double().mean()) * float(extent.prod())


