"""Fitting c·f(a·x + b) + d to samples of one KAN edge, for each candidate f of the symbolic library.

For fixed inner parameters (a, b) the best outer ones (c, d) are an ordinary linear least-squares
fit, solved in closed form, so only (a, b) need searching: a vectorised grid over the searched
ones, zoomed a few times around the best point, then every free parameter polished together by
``scipy.optimize.least_squares`` (Levenberg–Marquardt, analytic Jacobian).  The polish is kept only
if it raises R².  Results are reported in a canonical form (e.g. a > 0 for sin), so that the same
curve always gives the same parameters.  :func:`choose` then trades accuracy against the library's
complexity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from kanpde.models.functions import LIBRARY, Function, function

__all__ = ["SymbolicFit", "fit_function", "fit_library", "choose"]

_CHUNK = 1 << 21  # candidate·sample values evaluated at once in the grid search (bounds memory)


@dataclass(frozen=True)
class SymbolicFit:
    """The fit y ≈ c·f(a·x + b) + d with f = ``LIBRARY[name]``, and its R² on the fitted samples.

    r2 is -inf when no admissible (a, b) was found; the parameters are then nan.
    """

    name: str
    a: float
    b: float
    c: float
    d: float
    r2: float

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """c·f(a·x + b) + d for x of any shape, as float64 numpy of the same shape."""
        x = _to_numpy(x)
        return self.c * function(self.name).numpy(self.a * x + self.b) + self.d


def _to_numpy(v: Any) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().to(torch.float64).numpy()
    return np.asarray(v, dtype=np.float64)


def _samples(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _to_numpy(x), _to_numpy(y)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"x and y must be 1-D of the same nonzero length; got shapes {x.shape}, {y.shape}")
    return x, y


class _Scorer:
    """R² of predictions against fixed samples y: (n,), with constant y handled."""

    def __init__(self, y: np.ndarray) -> None:
        self.y = y
        self.yc = y - y.mean()
        self.ss_tot = float(self.yc @ self.yc)
        # below this SS_tot is rounding in the mean, i.e. y is constant: then R² = 1 for a residual
        # at that level and 0 (no better than the mean) otherwise
        self.tiny = y.size * (8 * np.finfo(np.float64).eps * float(np.abs(y).max())) ** 2

    def r2(self, ss_res: np.ndarray) -> np.ndarray:
        if self.ss_tot > self.tiny:
            return 1 - ss_res / self.ss_tot
        return np.where(ss_res <= self.tiny, 1.0, 0.0)


def _valid(f: Function, z: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows (candidates) of z: (m, n) whose values: (m, n) are finite and whose z is in f's domain."""
    ok = np.isfinite(values).all(-1)
    if f.domain == "positive":
        ok &= (z > 0).all(-1)
    return ok


def _scan(f: Function, x: np.ndarray, scorer: _Scorer, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R², c, d: (m,) each, of the least-squares c, d for each candidate (a[i], b[i]); R² = -inf where invalid."""
    m, n = a.size, x.size
    r2, c, d = np.full(m, -np.inf), np.zeros(m), np.zeros(m)
    step = max(1, _CHUNK // n)
    for s in range(0, m, step):
        z = a[s:s + step, None] * x + b[s:s + step, None]  # (chunk, n)
        with np.errstate(all="ignore"):
            F = f.numpy(z)
            fm = F.mean(-1)
            Fc = F - fm[:, None]
            var = np.einsum("ij,ij->i", Fc, Fc)
            cov = Fc @ scorer.yc
            # f constant over the samples (to rounding): c is unidentifiable, take c = 0
            spread = var > 1e-24 * np.einsum("ij,ij->i", F, F)
            cs = np.where(spread, cov / np.where(spread, var, 1.0), 0.0)
            ds = scorer.y.mean() - cs * fm
            res = scorer.yc - cs[:, None] * Fc
            ss_res = np.einsum("ij,ij->i", res, res)
        ok = _valid(f, z, F) & np.isfinite(ss_res) & np.isfinite(cs) & np.isfinite(ds)
        r2[s:s + step] = np.where(ok, scorer.r2(ss_res), -np.inf)
        c[s:s + step], d[s:s + step] = cs, ds
    return r2, c, d


def _axis(lo: float, hi: float, n: int, nonzero: bool) -> np.ndarray:
    v = np.linspace(lo, hi, n)
    if nonzero:  # a = 0 makes f(b) constant: move such a point half a step off zero
        v[np.abs(v) <= 1e-12 * max(abs(lo), abs(hi))] = (hi - lo) / (n - 1) / 2
    return v


def _polish(f: Function, x: np.ndarray, scorer: _Scorer, a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """Local least-squares refinement of the free parameters from (a, b, c, d)."""
    y = scorer.y
    # residual returned where the parameters leave f's domain or overflow: far above any
    # reachable cost, so the step is rejected and the damping raised
    penalty = 1e6 * (float(np.abs(y).max()) + 1.0)

    def unpack(p: np.ndarray) -> tuple[float, float, float, float]:
        it = iter(p)
        return (next(it) if f.fit_a else a), (next(it) if f.fit_b else b), next(it), next(it)

    def residual(p: np.ndarray) -> np.ndarray:
        pa, pb, pc, pd = unpack(p)
        z = pa * x + pb
        with np.errstate(all="ignore"):
            r = pc * f.numpy(z) + pd - y
        return r if _valid(f, z, r) else np.full_like(y, penalty)

    def jacobian(p: np.ndarray) -> np.ndarray:
        pa, pb, pc, _ = unpack(p)
        F, dF = (t.numpy() for t in f.derivatives(torch.from_numpy(pa * x + pb), 1))
        cols = ([pc * dF * x] if f.fit_a else []) + ([pc * dF] if f.fit_b else []) + [F, np.ones_like(x)]
        return np.nan_to_num(np.stack(cols, axis=1), nan=0.0, posinf=0.0, neginf=0.0)

    p0 = np.array(([a] if f.fit_a else []) + ([b] if f.fit_b else []) + [c, d])
    method = "lm" if x.size >= p0.size else "trf"
    try:
        from scipy.optimize import least_squares  # imported by the symbolic fits only

        sol = least_squares(residual, p0, jac=jacobian, method=method, x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14)
    except (ValueError, np.linalg.LinAlgError):
        return a, b, c, d
    return unpack(sol.x)


def _canonical(name: str, a: float, b: float, c: float, d: float) -> tuple[float, float, float, float]:
    """The same curve c·f(a·x + b) + d written in a unique way, using f's symmetries.

    log, sqrt: |a| = 1 (the scale moves into d, resp. c); abs: a = 1 (the scale moves into c);
    tanh, gaussian: a > 0 (f odd, resp. even); sin, cos: a > 0, c > 0 and b in [-π, π).
    """
    if name in ("log", "sqrt", "abs") and a != 0:
        k = abs(a)
        if name == "log":
            a, b, d = a / k, b / k, d + c * math.log(k)
        elif name == "sqrt":
            a, b, c = a / k, b / k, c * math.sqrt(k)
        else:
            a, b, c = 1.0, b / a, c * k
    elif name in ("tanh", "sin") and a < 0:
        a, b, c = -a, -b, -c
    elif name in ("gaussian", "cos") and a < 0:
        a, b = -a, -b
    if name in ("sin", "cos"):
        if c < 0:
            b, c = b + math.pi, -c
        b = (b + math.pi) % (2 * math.pi) - math.pi
    return a, b, c, d


def fit_function(x: Any, y: Any, name: str, a_range: tuple[float, float] = (-10, 10), b_range: tuple[float, float] = (-10, 10),
                 grid: int = 41, zooms: int = 3) -> SymbolicFit:
    """Best c·f(a·x + b) + d to samples x, y: (n,) for f = ``LIBRARY[name]``.

    The searched ones of a, b (see ``Function.fit_a``/``fit_b``) go over a ``grid``-point grid on
    ``a_range``/``b_range``, then ``zooms`` times over a grid one step either side of the best
    point; c, d are closed-form least squares for every candidate.  A candidate is invalid if any
    value is non-finite or, for a "positive" f, any a·x + b <= 0.  Finally a local least-squares
    polish of all free parameters is kept if it raises R².  The result is given in a canonical form
    of the same curve (see :func:`_canonical`), so equal curves give equal parameters even where
    f's symmetries make a, b redundant; a may then lie outside ``a_range``.
    """
    f = function(name)
    if grid < 2 or zooms < 0:
        raise ValueError(f"need grid >= 2 and zooms >= 0; got grid={grid}, zooms={zooms}")
    x, y = _samples(x, y)
    scorer = _Scorer(y)
    if name == "0":
        return SymbolicFit(name, 1.0, 0.0, 0.0, 0.0, float(scorer.r2(np.array(y @ y))))

    ranges = [tuple(map(float, a_range)) if f.fit_a else None, tuple(map(float, b_range)) if f.fit_b else None]
    best = (-np.inf, math.nan, math.nan, math.nan, math.nan)  # r2, a, b, c, d
    for _ in range(zooms + 1):
        a_ax = _axis(*ranges[0], grid, nonzero=True) if ranges[0] else np.array([1.0])
        b_ax = _axis(*ranges[1], grid, nonzero=False) if ranges[1] else np.array([0.0])
        A, B = (v.ravel() for v in np.meshgrid(a_ax, b_ax, indexing="ij"))
        r2, c, d = _scan(f, x, scorer, A, B)
        i = int(np.argmax(r2))
        if r2[i] > best[0]:
            best = (float(r2[i]), float(A[i]), float(B[i]), float(c[i]), float(d[i]))
        if best[0] == -np.inf or not (f.fit_a or f.fit_b):
            break
        ranges = [None if r is None else (v - (r[1] - r[0]) / (grid - 1), v + (r[1] - r[0]) / (grid - 1))
                  for r, v in zip(ranges, best[1:3])]
    if best[0] == -np.inf:
        return SymbolicFit(name, math.nan, math.nan, math.nan, math.nan, -math.inf)

    pa, pb, pc, pd = _polish(f, x, scorer, *best[1:])
    z = np.array([pa * x + pb])
    with np.errstate(all="ignore"):
        res = pc * f.numpy(z) + pd - y
    if _valid(f, z, res)[0]:
        r2 = float(scorer.r2(np.array(res[0] @ res[0])))
        if r2 > best[0]:
            best = (r2, pa, pb, pc, pd)
    r2, *params = best
    return SymbolicFit(name, *(float(v) for v in _canonical(name, *params)), r2)


def fit_library(x: Any, y: Any, names: Sequence[str] | None = None, **kw: Any) -> list[SymbolicFit]:
    """:func:`fit_function` for each of ``names`` (default: the whole library), best R² first.

    ``kw`` goes to :func:`fit_function`; equal R² keep the order of ``names``.
    """
    x, y = _samples(x, y)
    names = list(LIBRARY) if names is None else list(names)
    for n in names:
        function(n)  # unknown names fail before any fitting
    fits = [fit_function(x, y, n, **kw) for n in names]
    return sorted(fits, key=lambda fit: -fit.r2)


def choose(fits: Sequence[SymbolicFit], complexity_penalty: float = 1.0, r2_floor: float = 1e-12) -> SymbolicFit:
    """The fit with the lowest score log10(max(1 − R², r2_floor)) + complexity_penalty·complexity.

    One unit of complexity is thus worth a tenfold drop in the unexplained variance 1 − R²; the
    floor stops fits that are all exact to rounding from being told apart by their rounding.  Equal
    scores go to the lower complexity, then to the earlier fit.  An R² of -inf scores +inf.
    """
    if not fits:
        raise ValueError("choose needs at least one fit")

    def key(fit: SymbolicFit) -> tuple[float, int]:
        complexity = function(fit.name).complexity
        unexplained = 1.0 - fit.r2 if not math.isnan(fit.r2) else math.inf
        return math.log10(max(unexplained, r2_floor)) + complexity_penalty * complexity, complexity

    return min(fits, key=key)
