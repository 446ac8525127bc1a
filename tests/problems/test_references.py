"""Reference solutions: Burgers by Cole–Hopf (convergence, the PDE, Basdevant et al.'s benchmark slope) and
Allen–Cahn by Fourier/ETDRK4 (convergence in modes and step, known solutions), both cached."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

import kanpde.problems.references as refs
from kanpde.problems.references import (
    BURGERS_NU,
    allen_cahn_etdrk4,
    allen_cahn_initial,
    allen_cahn_initial_rfft,
    allen_cahn_reference,
    burgers_cole_hopf,
    burgers_cole_hopf_dx,
    burgers_max_slope,
    burgers_reference,
    etdrk4,
)


# --------------------------------------------------------------------------------------------- Burgers

def test_cole_hopf_converges_in_the_number_of_nodes():
    x = np.linspace(-1, 1, 401)
    for t in (0.05, 0.25, 0.5105, 1.0, 2.0):
        u, u2 = burgers_cole_hopf(x, t), burgers_cole_hopf(x, t, n_quad=320)
        ux, ux2 = burgers_cole_hopf_dx(x, t), burgers_cole_hopf_dx(x, t, n_quad=320)
        assert np.abs(u - u2).max() < 1e-13, t
        assert np.abs(ux - ux2).max() < 1e-12 * np.abs(ux2).max(), t
    # too few nodes is visibly wrong at t = 1: the test above can fail
    assert np.abs(burgers_cole_hopf(x, 1.0, n_quad=40) - u2).max() > 1e-8


def test_cole_hopf_initial_boundary_symmetry_and_shapes():
    x = np.linspace(-1, 1, 257)
    np.testing.assert_array_equal(burgers_cole_hopf(x, 0.0), -np.sin(np.pi * x))
    np.testing.assert_array_equal(burgers_cole_hopf_dx(x, 0.0), -np.pi * np.cos(np.pi * x))
    t = np.linspace(0, 1, 101)
    for edge in (-1.0, 1.0):
        assert np.abs(burgers_cole_hopf(edge, t)).max() < 1e-13
    u = burgers_cole_hopf(x[None, :], t[:, None])
    assert u.shape == (101, 257)
    np.testing.assert_allclose(u, -u[:, ::-1], rtol=0, atol=1e-13)  # odd in x
    assert burgers_cole_hopf(0.3, 0.5).shape == ()
    assert np.all(np.abs(u) <= 1 + 1e-12)
    # tiny t: continuous with the initial condition
    assert np.abs(burgers_cole_hopf(x, 1e-10) - (-np.sin(np.pi * x))).max() < 1e-7
    with pytest.raises(ValueError, match="t must be >= 0"):
        burgers_cole_hopf(x, -0.1)
    with pytest.raises(ValueError, match="finite"):
        burgers_cole_hopf(np.nan, 0.1)


def _d(f, x, t, h, axis):
    """Fourth-order central difference of f(x, t) in x (axis 0) or t (axis 1)."""
    g = (lambda s: f(x + s, t)) if axis == 0 else (lambda s: f(x, t + s))
    return (-g(2 * h) + 8 * g(h) - 8 * g(-h) + g(-2 * h)) / (12 * h)


def test_burgers_pde_residual_and_exact_derivative():
    X, T = np.meshgrid(np.linspace(-1, 1, 401), np.linspace(0.02, 0.98, 25))
    u, ux = burgers_cole_hopf(X, T), burgers_cole_hopf_dx(X, T)
    # u_x in closed form against finite differences of u, through the shock (|u_x| up to ~152)
    assert np.abs(_d(burgers_cole_hopf, X, T, 1e-5, 0) - ux).max() < 1e-9 * np.abs(ux).max()
    ut = _d(burgers_cole_hopf, X, T, 1e-4, 1)
    uxx = _d(burgers_cole_hopf_dx, X, T, 1e-4, 0)
    residual = ut + u * ux - BURGERS_NU * uxx
    away = np.abs(X) >= 0.1
    assert np.abs(residual[away]).max() < 1e-9  # measured 8e-12, |u_t| up to 6.5
    assert np.abs(residual).max() < 1e-4  # in the shock the differences themselves limit it (7e-6)


def test_basdevant_max_slope():
    """Basdevant et al. (1986): max |u_x| = 152.00516 at t = 1.6037/π for ν = 0.01/π."""
    slope, t_star, x_star = burgers_max_slope()
    assert abs(slope - 152.00516) < 1e-5  # measured 152.0051616
    assert abs(t_star - 0.5105) < 1e-3
    assert abs(np.pi * t_star - 1.6037) < 1e-4  # measured 1.603688
    assert abs(x_star) < 1e-6  # the shock stays at x = 0


def test_burgers_reference_grid_values_and_cache(tmp_path, monkeypatch):
    ref = burgers_reference(directory=tmp_path)
    np.testing.assert_array_equal(ref["x"], np.linspace(-1, 1, 256))
    np.testing.assert_array_equal(ref["t"], np.linspace(0, 0.99, 100))  # burgers_shock.mat: t = 0, 0.01, ..., 0.99
    assert ref["u"].shape == ref["u_x"].shape == (100, 256)
    np.testing.assert_array_equal(ref["u"][0], -np.sin(np.pi * ref["x"]))
    assert np.abs(ref["u"][:, [0, -1]]).max() < 1e-13
    np.testing.assert_allclose(ref["u"][57], burgers_cole_hopf(ref["x"], ref["t"][57]), rtol=0, atol=1e-15)

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(refs, "_cole_hopf", no_compute)
    again = burgers_reference(directory=tmp_path)
    np.testing.assert_array_equal(again["u"], ref["u"])
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))  # the default directory is $KANPDE_CACHE
    np.testing.assert_array_equal(burgers_reference()["u_x"], ref["u_x"])
    monkeypatch.undo()
    full = burgers_reference(nt=101, t_end=1.0, directory=tmp_path)
    np.testing.assert_array_equal(full["t"], np.linspace(0, 1, 101))
    assert len(list(tmp_path.glob("burgers-*.h5"))) == 2


# ----------------------------------------------------------------------------------------------- ETDRK4

def test_etdrk4_is_fourth_order_on_a_linear_problem():
    """v' = -d k² v + λ v with the λ v term handed to the explicit stages: exact v0·e^{(λ - d k²) t}."""
    k = np.pi * np.arange(33)
    lin, lam = -0.01 * k**2, 5.0  # d k² up to ~100: stiff next to the step sizes below
    v0 = np.exp(-0.1 * np.arange(33)).astype(complex)
    exact = v0 * np.exp(lam + lin)
    errors = []
    for dt in (0.1, 0.05, 0.025, 0.0125):
        n = round(1 / dt)
        v = etdrk4(v0, lin, lambda v: lam * v, dt, n, save_every=n)
        assert v.shape == (2, 33)
        errors.append(np.abs(v[-1] - exact).max() / np.abs(exact).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert errors[-1] < 1e-6 and np.all(ratios > 12), (errors, ratios)  # measured ratios 13.0, 14.4, 15.2 → 16
    # with nothing explicit the scheme is the exact exponential
    v = etdrk4(v0, lin, lambda v: 0 * v, 0.1, 10, save_every=5)
    np.testing.assert_allclose(v[-1], v0 * np.exp(lin), rtol=1e-13, atol=1e-300)
    with pytest.raises(ValueError, match="multiple"):
        etdrk4(v0, lin, lambda v: v, 0.1, 10, save_every=3)


def test_allen_cahn_on_a_spatially_constant_state_is_the_logistic_ode():
    """u0 = c: u_xx stays 0 and u' = 5u - 5u³ gives u = 1/sqrt(1 + (1/c² - 1) e^{-10t})."""
    sol = allen_cahn_etdrk4(n_modes=16, dt=1e-3, u0=lambda x: np.full_like(x, 0.3))
    exact = 1 / np.sqrt(1 + (1 / 0.3**2 - 1) * np.exp(-10 * sol["t"]))
    assert np.abs(sol["u"] - exact[:, None]).max() < 1e-10  # measured 1.9e-11


def test_allen_cahn_initial_coefficients_are_the_exact_fourier_coefficients():
    n = 64
    coef = allen_cahn_initial_rfft(n)
    for m in (0, 1, 2, 3, 7, 20, 32):
        a_m = quad(lambda x: x**2 * np.cos(np.pi * x) * np.cos(np.pi * m * x), -1, 1, limit=200, epsabs=1e-14)[0]
        expected = n * a_m * (-1) ** m * (1.0 if m == n // 2 else 0.5)  # rfft carries ±m once, the Nyquist cosine whole
        assert coef[m].real == pytest.approx(expected, rel=1e-9, abs=1e-12), m
    # the projection converges to the function away from the kink at x = ±1
    x = -1 + 2 * np.arange(n) / n
    inner = np.abs(x) < 0.5
    assert np.abs(np.fft.irfft(coef, n) - allen_cahn_initial(x))[inner].max() < 1e-3


@pytest.fixture(scope="module")
def allen_cahn_default():
    return allen_cahn_etdrk4()


@pytest.mark.slow
def test_allen_cahn_converges_in_modes_and_step(allen_cahn_default):
    """Doubling the modes and halving dt changes the default solution by < 1e-6 (measured 1.5e-10)."""
    coarse = allen_cahn_default
    fine = allen_cahn_etdrk4(n_modes=8192, dt=5e-4)
    np.testing.assert_array_equal(fine["x"][::2], coarse["x"])
    np.testing.assert_array_equal(fine["t"], coarse["t"])
    diff = np.abs(fine["u"][:, ::2] - coarse["u"]).max()
    assert diff < 1e-6
    assert diff < 1e-8, diff  # tighter than asked: the defaults are resolved to ~1e-10


def test_allen_cahn_solution_shape_and_properties(allen_cahn_default):
    sol = allen_cahn_default
    x, t, u = sol["x"], sol["t"], sol["u"]
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 4097))
    np.testing.assert_array_equal(t, np.linspace(0, 1, 201))
    assert u.shape == (201, 4097)
    np.testing.assert_array_equal(u[0], allen_cahn_initial(x))
    np.testing.assert_array_equal(u[:, -1], u[:, 0])  # the periodic endpoint column
    np.testing.assert_allclose(u, u[:, ::-1], rtol=0, atol=1e-12)  # even initial condition stays even
    assert np.abs(u).max() <= 1 + 1e-9  # the maximum principle: |u0| <= 1 stays so
    # the benchmark's picture at t = 1: -1 plateaus at the ends, +1 plateaus around x = ±0.375, fronts
    # near x = ±0.5, and u(1, 0) still near the unstable state 0 (u0 vanishes there)
    assert np.abs(u[-1, :257] + 1).max() < 1e-4  # x in [-1, -0.875] (measured 2.3e-5)
    assert u[-1, 1280] == pytest.approx(1, abs=0.02)  # x = -0.375 (measured 0.9921)
    assert abs(u[-1, 1024]) < 0.2  # x = -0.5, the front (measured -0.064)
    assert 0 < u[-1, 2048] < 0.1  # x = 0 (measured 0.0296)
    assert np.abs(np.diff(u[-1])).max() > 0.02  # a front: > 0.02 over one step of 2/4096
    plain = allen_cahn_etdrk4(n_modes=64, dt=5e-3, include_endpoint=False)
    assert plain["x"].shape == (64,) and plain["u"].shape == (201, 64) and plain["x"][-1] < 1
    with pytest.raises(ValueError, match="multiple of dt"):
        allen_cahn_etdrk4(n_modes=64, dt=3e-3)
    with pytest.raises(ValueError, match="even"):
        allen_cahn_etdrk4(n_modes=63)


def test_allen_cahn_reference_subsamples_and_caches(tmp_path, monkeypatch, allen_cahn_default):
    ref = allen_cahn_reference(directory=tmp_path)
    np.testing.assert_array_equal(ref["x"], np.linspace(-1, 1, 513))
    assert ref["u"].shape == (201, 513)
    np.testing.assert_array_equal(ref["u"], allen_cahn_default["u"][:, ::8])
    monkeypatch.setattr(refs, "allen_cahn_etdrk4", lambda **kw: pytest.fail("recomputed although cached"))
    np.testing.assert_array_equal(allen_cahn_reference(directory=tmp_path)["u"], ref["u"])
    with pytest.raises(ValueError, match="divide"):
        allen_cahn_reference(nx=500, directory=tmp_path)
