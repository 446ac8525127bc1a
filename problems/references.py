"""Reference solutions for two benchmark PDEs, computed here in numpy/scipy and cached in HDF5.

Burgers (Raissi et al. 2019's shock benchmark):
    u_t + u u_x = ν u_xx on x ∈ [-1, 1], t ∈ [0, 1], u(0, x) = -sin(πx), u(t, ±1) = 0, ν = 0.01/π.
    Exact, by the Cole–Hopf transform evaluated with Gauss–Hermite quadrature
    (:func:`burgers_cole_hopf`, :func:`burgers_cole_hopf_dx`); :func:`burgers_reference` tabulates it on
    the grid of the classic ``burgers_shock.mat``.

Allen–Cahn (Raissi et al. 2019's discrete-time benchmark):
    u_t - d u_xx + 5u³ - 5u = 0 on x ∈ [-1, 1] periodic, t ∈ [0, 1], u(0, x) = x² cos(πx), d = 1e-4.
    Fourier pseudo-spectral in space, ETDRK4 in time (Cox & Matthews 2002, with the φ-functions evaluated
    by Kassam & Trefethen's 2005 contour integrals): :func:`allen_cahn_etdrk4`, cached as
    :func:`allen_cahn_reference`.

Measured accuracy (see tests/test_references.py):
    * Cole–Hopf: n_quad = 160 agrees with 320 nodes to ~1e-15 for t ≤ 2 (2.6e-8 at t = 5); max_x |u_x| peaks at
      152.0051616 at t* = 0.5104698 (π t* = 1.603688), against Basdevant et al. (1986)'s 152.00516 at
      π t = 1.6037.
    * Allen–Cahn: the defaults (4096 modes, dt = 1e-3) differ from (8192 modes, dt = 5e-4) by ~2e-10 (max
      over all output times and common grid points); ~1 s on one core.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable

import numpy as np
from scipy.special import roots_hermite

from kanpde.io.cache import cached_arrays
from kanpde.checks import positive_float, positive_int

BURGERS_NU = 0.01 / np.pi
ALLEN_CAHN_D = 1e-4

# Bump when the code below changes the numbers it produces: old cache files then stop matching.
_BURGERS_VERSION = 1
_ALLEN_CAHN_VERSION = 1


# --------------------------------------------------------------------------------------------- Burgers

@lru_cache(maxsize=8)
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and log-weights (∫ e^{-z²} g(z) dz ≈ Σ w_i g(z_i)); nodes whose weight underflows are dropped.

    scipy's ``roots_hermite`` stays accurate for large n, where numpy's ``hermgauss`` overflows (n ≳ 1000).
    """
    z, w = roots_hermite(n)
    keep = w > 0
    return z[keep], np.log(w[keep])


def _cole_hopf(x, t, nu: float, n_quad: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """u and u_x at the broadcast points (x, t).

    With y = x - sqrt(4νt)·z, f(y) = exp(-cos(πy)/(2πν)) and ⟨g⟩ = Σ w_i g(y_i) f(y_i) / Σ w_i f(y_i):
        u   = -⟨sin πy⟩
        u_x = -π ⟨cos πy⟩ - ⟨(sin πy - ⟨sin πy⟩)²⟩ / (2ν)
    (differentiating under the integral; f'(y) = f(y) sin(πy)/(2ν)).  The variance form avoids the
    cancellation of ⟨sin²⟩ - ⟨sin⟩², which 1/(2ν) ≈ 157 would amplify.  Each point's exponents are shifted
    by their maximum, so exp(±50) (ν = 0.01/π) never overflows.
    """
    nu = positive_float("nu", nu)
    n_quad = positive_int("n_quad", n_quad, minimum=2)
    x, t = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(t, dtype=float))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t))):
        raise ValueError("x and t must be finite")
    if np.any(t < 0):
        raise ValueError(f"t must be >= 0, got min(t) = {t.min()}")
    shape = x.shape
    x, t = x.ravel(), t.ravel()
    u = -np.sin(np.pi * x)  # t = 0: the initial condition itself
    ux = -np.pi * np.cos(np.pi * x)
    z, logw = _hermite(n_quad)
    pos = np.flatnonzero(t > 0)
    for start in range(0, pos.size, chunk):
        idx = pos[start:start + chunk]
        c = np.sqrt(4.0 * nu * t[idx])[:, None]
        y = np.pi * (x[idx, None] - c * z)  # π·y
        e = logw - np.cos(y) / (2.0 * np.pi * nu)
        g = np.exp(e - e.max(axis=1, keepdims=True))
        g /= g.sum(axis=1, keepdims=True)
        s = np.sin(y)
        m = np.einsum("pq,pq->p", g, s)
        var = np.einsum("pq,pq->p", g, (s - m[:, None]) ** 2)
        u[idx] = -m
        ux[idx] = -np.pi * np.einsum("pq,pq->p", g, np.cos(y)) - var / (2.0 * nu)
    return u.reshape(shape), ux.reshape(shape)


def burgers_cole_hopf(x, t, nu: float = BURGERS_NU, n_quad: int = 160) -> np.ndarray:
    """The exact solution u(x, t) of u_t + u u_x = ν u_xx, u(0, x) = -sin(πx), u(t, ±1) = 0.

    Cole–Hopf: u = -∫ sin(π(x-η)) f(x-η) e^{-η²/(4νt)} dη / ∫ f(x-η) e^{-η²/(4νt)} dη with
    f(y) = exp(-cos(πy)/(2πν)), evaluated by ``n_quad``-point Gauss–Hermite quadrature after η = sqrt(4νt)·z.
    ``x`` and ``t`` broadcast against each other; the result has their broadcast shape.  At t = 0 it is
    -sin(πx) exactly.  160 nodes give ~1e-15 for ν = 0.01/π and t ≤ 2 (at t = 1, 50 nodes give ~1e-7).
    """
    return _cole_hopf(x, t, nu, n_quad)[0]


def burgers_cole_hopf_dx(x, t, nu: float = BURGERS_NU, n_quad: int = 160) -> np.ndarray:
    """∂u/∂x of :func:`burgers_cole_hopf`, exact (the derivative taken under the integral), same arguments."""
    return _cole_hopf(x, t, nu, n_quad)[1]


def burgers_max_slope(
    nu: float = BURGERS_NU, t_bounds: tuple[float, float] = (0.4, 0.6), n_quad: int = 160, xtol: float = 1e-10
) -> tuple[float, float, float]:
    """max over (x, t) of |∂u/∂x| for t in ``t_bounds``: returns (max |u_x|, t*, x*).

    For each t the maximum over x is found by a search on 401 points of [-0.02, 0.02] (the shock sits at
    x = 0 by symmetry) refined by a bounded scalar minimisation between the neighbours of the best point;
    the maximum over t by ``scipy.optimize.minimize_scalar`` (bounded).  Basdevant et al. (1986) give
    152.00516 at t = 1.6037/π.
    """
    from scipy.optimize import minimize_scalar

    xs = np.linspace(-0.02, 0.02, 401)

    def over_x(t: float) -> tuple[float, float]:
        slopes = np.abs(burgers_cole_hopf_dx(xs, t, nu, n_quad))
        i = int(np.argmax(slopes))
        lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, xs.size - 1)]
        r = minimize_scalar(lambda xx: -abs(float(burgers_cole_hopf_dx(xx, t, nu, n_quad))), bounds=(lo, hi),
                            method="bounded", options={"xatol": 1e-12})
        best = max((-r.fun, r.x), (slopes[i], xs[i]))
        return float(best[0]), float(best[1])

    r = minimize_scalar(lambda tt: -over_x(tt)[0], bounds=t_bounds, method="bounded", options={"xatol": xtol})
    slope, x_star = over_x(float(r.x))
    return slope, float(r.x), x_star


def burgers_reference(
    nx: int = 256,
    nt: int = 100,
    t_end: float = 0.99,
    nu: float = BURGERS_NU,
    n_quad: int = 160,
    directory: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """The Cole–Hopf solution tabulated on x = linspace(-1, 1, nx), t = linspace(0, t_end, nt), cached.

    Returns ``x`` (nx,), ``t`` (nt,), ``u`` (nt, nx) and ``u_x`` (nt, nx).  The defaults are the grid of
    the classic ``burgers_shock.mat`` (Raissi et al.): 256 points in x including both ends, 100 times
    0, 0.01, …, 0.99 (not 101 up to 1); ``nt=101, t_end=1.0`` covers all of [0, 1].  Cached under
    :func:`kanpde.io.cache.cache_dir` (or ``directory``).
    """
    nx = positive_int("nx", nx, minimum=2)
    nt = positive_int("nt", nt, minimum=1)
    t_end = positive_float("t_end", t_end, allow_zero=True)
    nu = positive_float("nu", nu)
    n_quad = positive_int("n_quad", n_quad, minimum=2)

    def compute() -> dict[str, np.ndarray]:
        x = np.linspace(-1.0, 1.0, nx)
        t = np.linspace(0.0, t_end, nt)
        u, ux = _cole_hopf(x[None, :], t[:, None], nu, n_quad)
        return {"x": x, "t": t, "u": u, "u_x": ux}

    params = {"nx": nx, "nt": nt, "t_end": t_end, "nu": nu, "n_quad": n_quad, "version": _BURGERS_VERSION}
    return cached_arrays("burgers", params, compute, directory)


# ----------------------------------------------------------------------------------------------- ETDRK4

def etdrk4_coefficients(lin: np.ndarray, dt: float, n_contour: int = 32) -> tuple[np.ndarray, ...]:
    """ETDRK4 coefficients (E, E2, Q, f1, f2, f3) for the diagonal linear operator ``lin`` and step ``dt``.

    Cox & Matthews (2002)'s scheme; the φ-function combinations are averaged over ``n_contour`` points of
    a unit circle around each dt·L in the upper half plane (Kassam & Trefethen 2005), which avoids the
    cancellation of their Taylor-free formulas near L = 0.  ``lin`` must be real.
    """
    lin = np.asarray(lin)
    if np.iscomplexobj(lin):
        raise ValueError("etdrk4_coefficients expects a real linear operator (the half-circle contour uses conjugate symmetry)")
    h = positive_float("dt", dt)
    hl = h * lin.astype(float)
    r = np.exp(1j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    lr = hl[..., None] + r
    elr = np.exp(lr)
    q = h * np.mean((np.exp(lr / 2) - 1) / lr, axis=-1).real
    f1 = h * np.mean((-4 - lr + elr * (4 - 3 * lr + lr**2)) / lr**3, axis=-1).real
    f2 = h * np.mean((2 + lr + elr * (lr - 2)) / lr**3, axis=-1).real
    f3 = h * np.mean((-4 - 3 * lr - lr**2 + elr * (4 - lr)) / lr**3, axis=-1).real
    return np.exp(hl), np.exp(hl / 2), q, f1, f2, f3


def etdrk4(
    v0: np.ndarray,
    lin: np.ndarray,
    nonlin: Callable[[np.ndarray], np.ndarray],
    dt: float,
    n_steps: int,
    save_every: int = 1,
    n_contour: int = 32,
) -> np.ndarray:
    """Integrate v' = lin·v + nonlin(v) (``lin`` diagonal, element-wise) by ``n_steps`` ETDRK4 steps of ``dt``.

    Returns the states at steps 0, save_every, 2·save_every, …, n_steps stacked on a new first axis
    (``n_steps`` must be a multiple of ``save_every``).
    """
    n_steps = positive_int("n_steps", n_steps, minimum=0)
    save_every = positive_int("save_every", save_every)
    if n_steps % save_every:
        raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(lin, dt, n_contour)
    v = np.array(v0, dtype=np.result_type(v0, e))
    out = [v.copy()]
    for step in range(1, n_steps + 1):
        nv = nonlin(v)
        a = e2 * v + q * nv
        na = nonlin(a)
        b = e2 * v + q * na
        nb = nonlin(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlin(c)
        v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
        if step % save_every == 0:
            out.append(v.copy())
    return np.stack(out)


# ------------------------------------------------------------------------------------------ Allen–Cahn

def allen_cahn_initial(x) -> np.ndarray:
    """u(0, x) = x² cos(πx)."""
    x = np.asarray(x, dtype=float)
    return x**2 * np.cos(np.pi * x)


def allen_cahn_initial_rfft(n_modes: int) -> np.ndarray:
    """``np.fft.rfft`` coefficients of the Fourier *projection* of x² cos(πx) (periodic on [-1, 1]) on the
    grid x_j = -1 + 2j/N: exact Fourier coefficients, not samples.

    The periodic extension has a kink at x = ±1 (slope -2 ↔ +2), so its coefficients decay only like m⁻²;
    sampling would alias them (an O(1/N) error that diffusion does not remove).  With the cosine series
    x² cos(πx) = a₀/2 + Σ a_m cos(πmx), a_m = (I(m-1) + I(m+1))/2, I(k) = ∫₋₁¹ x² cos(πkx) dx
    = 2/3 (k = 0), 4(-1)^k/(πk)² (k ≠ 0).  Grid index j carries the phase (-1)^m of x_0 = -1.
    """
    n_modes = positive_int("n_modes", n_modes, minimum=2)
    if n_modes % 2:
        raise ValueError(f"n_modes must be even, got {n_modes}")
    m = np.arange(n_modes // 2 + 1)

    def integral(k: np.ndarray) -> np.ndarray:
        k = np.abs(k)
        safe = np.where(k == 0, 1, k).astype(float)
        return np.where(k == 0, 2.0 / 3.0, 4.0 * np.where(k % 2, -1.0, 1.0) / (np.pi * safe) ** 2)

    a = 0.5 * (integral(m - 1) + integral(m + 1))
    sign = np.where(m % 2, -1.0, 1.0)
    coef = 0.5 * n_modes * a * sign
    coef[-1] *= 2.0  # the Nyquist cosine: cos(πNx/2) = ±(-1)^j on the grid, carried once by rfft
    return coef.astype(complex)


def allen_cahn_etdrk4(
    n_modes: int = 4096,
    dt: float = 1e-3,
    t_end: float = 1.0,
    d: float = ALLEN_CAHN_D,
    nt: int = 201,
    u0: Callable[[np.ndarray], np.ndarray] | None = None,
    include_endpoint: bool = True,
) -> dict[str, np.ndarray]:
    """Allen–Cahn u_t = d u_xx + 5u - 5u³ on [-1, 1] periodic, Fourier pseudo-spectral + ETDRK4.

    Splitting: L = 5 - d k² (k = πm) exactly, N(u) = -5u³ explicitly, evaluated on the grid without
    dealiasing (the defaults resolve the solution to ~1e-10, so aliasing is below that).
    Output at ``nt`` times linspace(0, t_end, nt); ``t_end/(nt-1)`` must be a multiple of ``dt``.
    Returns ``x`` (N or N+1,), ``t`` (nt,), ``u`` (nt, N or N+1) on x_j = -1 + 2j/N; with
    ``include_endpoint`` (default) the periodic copy x = 1 (= u at x = -1) is appended, so that x is
    linspace(-1, 1, N+1) and covers the closed interval a PINN is trained on.

    ``u0=None`` is the benchmark x² cos(πx), started from its exact Fourier projection
    (:func:`allen_cahn_initial_rfft`); row 0 of ``u`` is then x² cos(πx) itself.  Any other ``u0``
    (a function of x) is sampled on the grid.
    """
    n_modes = positive_int("n_modes", n_modes, minimum=2)
    if n_modes % 2:
        raise ValueError(f"n_modes must be even, got {n_modes}")
    dt = positive_float("dt", dt)
    t_end = positive_float("t_end", t_end)
    d = positive_float("d", d, allow_zero=True)
    nt = positive_int("nt", nt, minimum=2)
    interval = t_end / (nt - 1)
    save_every = int(round(interval / dt))
    if save_every < 1 or abs(save_every * dt - interval) > 1e-9 * interval:
        raise ValueError(f"the output interval t_end/(nt-1) = {interval!r} must be a multiple of dt = {dt!r}")
    n_steps = save_every * (nt - 1)

    x = -1.0 + 2.0 * np.arange(n_modes) / n_modes
    k = np.pi * np.arange(n_modes // 2 + 1)
    lin = 5.0 - d * k**2
    v0 = allen_cahn_initial_rfft(n_modes) if u0 is None else np.fft.rfft(np.asarray(u0(x), dtype=float) * np.ones(n_modes))

    def nonlin(v: np.ndarray) -> np.ndarray:
        return -5.0 * np.fft.rfft(np.fft.irfft(v, n_modes) ** 3)

    u = np.fft.irfft(etdrk4(v0, lin, nonlin, dt, n_steps, save_every), n_modes, axis=-1)
    if u0 is None:
        u[0] = allen_cahn_initial(x)
    if include_endpoint:
        x = np.append(x, 1.0)
        u = np.concatenate([u, u[:, :1]], axis=1)
    return {"x": x, "t": np.linspace(0.0, t_end, nt), "u": u}


def allen_cahn_reference(
    nx: int = 512,
    n_modes: int = 4096,
    dt: float = 1e-3,
    t_end: float = 1.0,
    nt: int = 201,
    d: float = ALLEN_CAHN_D,
    directory: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """:func:`allen_cahn_etdrk4` (benchmark initial condition) on x = linspace(-1, 1, nx+1), cached.

    Computed with ``n_modes`` and kept at every (n_modes/nx)-th grid point plus the periodic endpoint
    x = 1, so ``nx`` must divide ``n_modes``.  Returns ``x`` (nx+1,), ``t`` (nt,), ``u`` (nt, nx+1).
    The classic ``AC.mat`` has 512 points at spacing 2/511, which no power-of-two grid reproduces.
    """
    nx = positive_int("nx", nx, minimum=2)
    n_modes = positive_int("n_modes", n_modes, minimum=2)
    dt, t_end = positive_float("dt", dt), positive_float("t_end", t_end)
    d, nt = positive_float("d", d, allow_zero=True), positive_int("nt", nt, minimum=2)
    if n_modes % nx:
        raise ValueError(f"nx ({nx}) must divide n_modes ({n_modes})")
    stride = n_modes // nx

    def compute() -> dict[str, np.ndarray]:
        sol = allen_cahn_etdrk4(n_modes=n_modes, dt=dt, t_end=t_end, d=d, nt=nt, include_endpoint=True)
        return {"x": sol["x"][::stride], "t": sol["t"], "u": sol["u"][:, ::stride]}

    params = {"nx": nx, "n_modes": n_modes, "dt": dt, "t_end": t_end, "nt": nt, "d": d, "version": _ALLEN_CAHN_VERSION}
    return cached_arrays("allen_cahn", params, compute, directory)
