"""Tests for kanpde.models.functions (symbolic edge library) and kanpde.interpret.fit (fitting c·f(a·x + b) + d)."""
import math
import runpy
import sys

import numpy as np
import pytest
import torch

from kanpde.interpret.fit import SymbolicFit, choose, fit_function, fit_library
from kanpde.models.functions import LIBRARY, function

PI = math.pi

# name: (truth (a, b, c, d), expected fit (a, b, c, d), x range).  The expected parameters are the
# canonical form of the truth that fit_function reports (same curve): several truths are written
# non-canonically on purpose, so the symmetries are exercised rather than ruled out by the ranges.
CASES = {
    "x": ((1.0, 0.0, 1.7, -0.4), (1.0, 0.0, 1.7, -0.4), (-1.0, 1.0)),
    "x^2": ((1.0, 0.3, 1.7, -0.5), (1.0, 0.3, 1.7, -0.5), (-1.0, 1.0)),
    "x^3": ((1.0, -0.6, 0.8, 0.2), (1.0, -0.6, 0.8, 0.2), (-1.0, 1.0)),
    "x^4": ((1.0, 0.45, -1.3, 0.7), (1.0, 0.45, -1.3, 0.7), (-1.0, 1.0)),
    "exp": ((1.6, 0.0, 0.9, -0.3), (1.6, 0.0, 0.9, -0.3), (-1.0, 1.0)),
    # log(2.5x + 3) = log(x + 1.2) + log 2.5: only the sign of a is identifiable; |a| = 1, the rest in d
    "log": ((2.5, 3.0, 0.7, 0.1), (1.0, 1.2, 0.7, 0.1 + 0.7 * math.log(2.5)), (-1.0, 1.0)),
    # 1.4·sqrt(-4x + 5) = 2.8·sqrt(-x + 1.25)
    "sqrt": ((-4.0, 5.0, 1.4, -0.6), (-1.0, 1.25, 2.8, -0.6), (-1.0, 1.0)),
    # sin(-2.3x + 0.4) = -sin(2.3x - 0.4) = sin(2.3x - 0.4 + π): canonical a > 0, c > 0, b in [-π, π)
    "sin": ((-2.3, 0.4, 1.1, 0.2), (2.3, PI - 0.4, 1.1, 0.2), (-1.0, 1.0)),
    # -0.6·cos(3.1x - 0.7 + 2π) = 0.6·cos(3.1x - 0.7 + π)
    "cos": ((3.1, -0.7 + 2 * PI, -0.6, 0.5), (3.1, PI - 0.7, 0.6, 0.5), (-1.0, 1.0)),
    # tanh is odd: (a, b, c) -> (-a, -b, -c)
    "tanh": ((-2.7, 0.35, 1.2, -0.1), (2.7, -0.35, -1.2, -0.1), (-1.0, 1.0)),
    # 0.9·|-1.8x + 0.5| = 1.62·|x - 0.5/1.8|; the kink x = 0.278 lies inside the range
    "abs": ((-1.8, 0.5, 0.9, 0.3), (1.0, -0.5 / 1.8, 1.62, 0.3), (-1.0, 1.0)),
    # gaussian is even: (a, b) -> (-a, -b)
    "gaussian": ((-1.5, 0.3, 1.3, -0.2), (1.5, -0.3, 1.3, -0.2), (-2.0, 2.0)),
}


def _curve(name, a, b, c, d, x):
    return c * LIBRARY[name].numpy(a * x + b) + d


def _z(name, shape=(41,)):
    """float64 points on the function's domain (avoiding 0 for abs), requiring grad."""
    n = math.prod(shape)
    if LIBRARY[name].domain == "positive":
        z = torch.linspace(0.2, 3.0, n, dtype=torch.float64)
    elif name == "abs":
        z = torch.cat([torch.linspace(-2.0, -0.1, n // 2, dtype=torch.float64), torch.linspace(0.1, 2.0, n - n // 2, dtype=torch.float64)])
    else:
        z = torch.linspace(-2.0, 2.0, n, dtype=torch.float64)
    return z.reshape(shape).requires_grad_(True)


def test_library_names_and_fixed_parameters():
    assert list(LIBRARY) == ["0", "x", "x^2", "x^3", "x^4", "exp", "log", "sqrt", "sin", "cos", "tanh", "abs", "gaussian"]
    fixed = {n: (f.fit_a, f.fit_b) for n, f in LIBRARY.items()}
    assert fixed["0"] == fixed["x"] == (False, False)
    assert fixed["x^2"] == fixed["x^3"] == fixed["x^4"] == (False, True)
    assert fixed["exp"] == (True, False)
    assert all(fixed[n] == (True, True) for n in ["log", "sqrt", "sin", "cos", "tanh", "abs", "gaussian"])
    assert {n for n, f in LIBRARY.items() if f.domain == "positive"} == {"log", "sqrt"}
    assert all(f.domain == "all" for n, f in LIBRARY.items() if n not in ("log", "sqrt"))


@pytest.mark.parametrize("name", list(LIBRARY))
def test_derivatives_match_autograd(name):
    f = LIBRARY[name]
    z = _z(name, (3, 14))  # 2-D: the derivatives must keep z's shape
    closed = f.derivatives(z, 4)
    assert len(closed) == 5 and all(t.shape == z.shape and t.dtype == torch.float64 for t in closed)
    nested = [f.derivatives(z, 0)[0]]
    for _ in range(4):
        g = nested[-1]
        # a constant derivative (x', the 0 function's) no longer depends on z: the next one is 0
        nested.append(torch.autograd.grad(g.sum(), z, create_graph=True)[0] if g.requires_grad else torch.zeros_like(z))
    for k in range(5):
        torch.testing.assert_close(closed[k], nested[k], rtol=1e-10, atol=1e-10, msg=f"{name} order {k}")
    # the closed forms are themselves differentiable: d/dz of the k-th is the (k+1)-th
    for k in range(4):
        (g,) = torch.autograd.grad(closed[k].sum(), z, retain_graph=True)
        torch.testing.assert_close(g, closed[k + 1].detach(), rtol=1e-10, atol=1e-10, msg=f"{name} d/dz of order {k}")


def test_derivatives_known_values():
    # spot checks independent of autograd
    z = torch.tensor([0.5], dtype=torch.float64)
    assert [float(t) for t in LIBRARY["x^3"].derivatives(z, 4)] == [0.125, 0.75, 3.0, 6.0, 0.0]
    assert float(LIBRARY["sqrt"].derivatives(z, 4)[4]) == pytest.approx(-15 / 16 * 0.5 ** -3.5, rel=1e-14)
    assert float(LIBRARY["log"].derivatives(z, 4)[4]) == pytest.approx(-6 / 0.5**4, rel=1e-14)
    t = math.tanh(0.5)
    assert float(LIBRARY["tanh"].derivatives(z, 3)[3]) == pytest.approx(-2 + 8 * t**2 - 6 * t**4, rel=1e-13)
    # gaussian: f'' = (4z² - 2)·exp(-z²)
    assert float(LIBRARY["gaussian"].derivatives(z, 2)[2]) == pytest.approx((4 * 0.25 - 2) * math.exp(-0.25), rel=1e-14)
    assert [float(v) for v in LIBRARY["abs"].derivatives(torch.tensor([-0.5], dtype=torch.float64), 3)] == [0.5, -1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="order"):
        LIBRARY["sin"].derivatives(z, -1)


@pytest.mark.parametrize("name", list(LIBRARY))
def test_sympy_and_numpy_match_torch(name):
    sympy = pytest.importorskip("sympy")
    f = LIBRARY[name]
    z = _z(name).detach()
    want = f.derivatives(z, 0)[0].numpy()
    s = sympy.Symbol("z")
    got = np.broadcast_to(sympy.lambdify(s, f.sympy(s), "numpy")(z.numpy()), want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.numpy(z.numpy()), want, rtol=1e-12, atol=1e-12)
    assert f.numpy(z.numpy()).shape == want.shape


def test_sympy_forms():
    sympy = pytest.importorskip("sympy")
    s = sympy.Symbol("s")
    assert LIBRARY["gaussian"].sympy(s) == sympy.exp(-s**2)
    assert LIBRARY["x^4"].sympy(2 * s + 1) == (2 * s + 1) ** 4
    assert LIBRARY["0"].sympy(s) == 0


@pytest.mark.filterwarnings("ignore:'kanpde.*found in sys.modules:RuntimeWarning")
def test_modules_run_without_sympy(monkeypatch):
    # sympy is imported lazily, inside Function.sympy: with it made unimportable, both modules still
    # execute (in fresh namespaces, leaving the imported ones alone) and fitting works
    monkeypatch.setitem(sys.modules, "sympy", None)
    functions = runpy.run_module("kanpde.models.functions")
    fit = runpy.run_module("kanpde.interpret.fit")
    assert fit["fit_function"](np.arange(5.0), np.arange(5.0) ** 2, "x^2").r2 == pytest.approx(1.0)
    with pytest.raises(ImportError):
        functions["LIBRARY"]["sin"].sympy(1)


def test_unknown_name_raises():
    x = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match=r"'sinh'.*known: 0, x, x\^2"):
        function("sinh")
    with pytest.raises(ValueError, match="'sinh'"):
        fit_function(x, x, "sinh")
    with pytest.raises(ValueError, match="'cosh'"):
        fit_library(x, x, names=["sin", "cosh"])
    with pytest.raises(ValueError, match="'sinh'"):
        choose([SymbolicFit("sinh", 1.0, 0.0, 1.0, 0.0, 1.0)])


@pytest.mark.parametrize("name", list(CASES))
def test_fit_recovers_parameters(name):
    truth, expected, (lo, hi) = CASES[name]
    x = np.linspace(lo, hi, 200)
    y = _curve(name, *truth, x)
    fit = fit_function(x, y, name)
    assert fit.name == name
    assert fit.r2 >= 0.9999
    np.testing.assert_allclose([fit.a, fit.b, fit.c, fit.d], expected, rtol=1e-4, atol=1e-8)
    assert np.abs(fit(x) - y).max() <= 1e-6
    # the fitted curve, not just the samples: on a denser grid of the same range
    xs = np.linspace(lo, hi, 1001)
    assert np.abs(fit(xs) - _curve(name, *truth, xs)).max() <= 1e-6


def test_fit_accepts_tensors_and_zero_function():
    x = torch.linspace(-1, 1, 50)  # float32 in, float64 out
    fit = fit_function(x, 2 * x + 1, "x")
    assert (fit.c, fit.d) == pytest.approx((2.0, 1.0), rel=1e-6)
    assert isinstance(fit(x), np.ndarray) and fit(x).dtype == np.float64
    # "0": c = d = 0 and R² = 1 - Σy²/Σ(y - ȳ)²; for y = x + 1 on a symmetric grid that is 1 - (Σx² + n)/Σx²
    xn = np.linspace(-1, 1, 101)
    zero = fit_function(xn, xn + 1, "0")
    assert (zero.c, zero.d) == (0.0, 0.0)
    assert zero.r2 == pytest.approx(-len(xn) / float(xn @ xn), rel=1e-12)
    np.testing.assert_array_equal(zero(xn), np.zeros_like(xn))
    # constant data: a fit with c = 0 explains it fully, the 0 function not at all
    const = np.full_like(xn, 3.0)
    assert fit_function(xn, const, "x").r2 == 1.0 and fit_function(xn, const, "0").r2 == 0.0


def test_fit_library_ranks_sin_and_cos_first_on_sin_data():
    x = np.linspace(-1, 1, 200)
    y = 1.1 * np.sin(2.3 * x + 0.4) + 0.2
    fits = fit_library(x, y)
    assert [f.name for f in fits].count("sin") == 1 and len(fits) == len(LIBRARY)
    assert all(f1.r2 >= f2.r2 for f1, f2 in zip(fits, fits[1:]))
    # sin(z) = cos(z - π/2): both fit exactly, so which of the two is first depends on rounding in
    # R²; they must be the top two, with the same a, c, d and b shifted by π/2
    top = {f.name: f for f in fits[:2]}
    assert set(top) == {"sin", "cos"}
    assert min(f.r2 for f in fits[:2]) >= 1 - 1e-12 and fits[2].r2 < 0.9999
    np.testing.assert_allclose([top["sin"].a, top["sin"].b, top["sin"].c, top["sin"].d], [2.3, 0.4, 1.1, 0.2], rtol=1e-6)
    np.testing.assert_allclose([top["cos"].a, top["cos"].b, top["cos"].c, top["cos"].d], [2.3, 0.4 - PI / 2, 1.1, 0.2], rtol=1e-6)
    assert choose(fits).name in ("sin", "cos")
    # both are exact to below choose's floor, and of equal complexity: the earlier one given wins
    assert choose([top["cos"], top["sin"]]).name == "cos" and choose([top["sin"], top["cos"]]).name == "sin"


def test_choose_prefers_exact_simple_form():
    x = np.linspace(-1, 1, 200)
    y = 1.7 * (x + 0.3) ** 2 - 0.5
    fits = fit_library(x, y)
    assert fits[0].name == "x^2" and fits[0].r2 >= 1 - 1e-12
    assert choose(fits).name == "x^2"
    # x^4 cannot fit it: complexity penalty aside, its R² is far lower
    assert next(f for f in fits if f.name == "x^4").r2 < 0.99


def test_choose_picks_much_better_fit_despite_complexity():
    x = np.linspace(-2, 2, 200)
    y = 1.3 * np.exp(-(1.5 * x - 0.3) ** 2) - 0.2
    fits = fit_library(x, y, names=["x^2", "sin", "gaussian"])
    by_name = {f.name: f for f in fits}
    assert by_name["gaussian"].r2 >= 1 - 1e-12 and by_name["x^2"].r2 < 0.95
    assert choose(fits).name == "gaussian"  # complexity 3, against 2 for x^2 and sin


def test_choose_score_rule():
    def fit(name, r2):
        return SymbolicFit(name, 1.0, 0.0, 1.0, 0.0, r2)

    # score = log10(1 - R²) + complexity: x^2 (2): -8.5 + 2 = -6.5 beats x^4 (3): -9 + 3 = -6
    fits = [fit("x^4", 1 - 1e-9), fit("x^2", 1 - 10**-8.5)]
    assert choose(fits).name == "x^2"
    assert choose(fits, complexity_penalty=0.0).name == "x^4"
    assert choose(fits, complexity_penalty=0.5).name == "x^4"  # -9 + 1.5 < -8.5 + 1
    # a much better R² outweighs complexity: x^2 at 1 - R² = 1e-2 scores 0
    assert choose([fit("x^2", 0.99), fit("x^4", 1 - 1e-9)]).name == "x^4"
    # below the floor, exact fits are equal and complexity decides
    # (gaussian: -12 + 3 = -9 against x: -11 + 1 = -10; with a floor of 1e-16, -13 against -10)
    assert choose([fit("gaussian", 1.0), fit("x", 1 - 1e-11)]).name == "x"
    assert choose([fit("gaussian", 1.0), fit("x", 1 - 1e-11)], r2_floor=1e-16).name == "gaussian"
    # equal scores: the simpler one, whatever the order
    for order in (1, -1):
        assert choose([fit("tanh", 0.75), fit("sin", 0.75)][::order], complexity_penalty=0.0).name == "sin"
    # equal score and complexity: the earlier one
    assert choose([fit("cos", 0.75), fit("sin", 0.75)]).name == "cos"
    # an invalid fit (R² = -inf) loses to anything finite
    assert choose([fit("0", -np.inf), fit("gaussian", -5.0)]).name == "gaussian"
    with pytest.raises(ValueError):
        choose([])


@pytest.mark.parametrize("data", ["sqrt", "quadratic", "sin", "abs"])
def test_positive_domain_fits_stay_in_domain(data):
    x = np.linspace(-1, 1, 200)
    y = {"sqrt": np.sqrt(x + 1.5), "quadratic": x**2, "sin": np.sin(3 * x), "abs": np.abs(x)}[data]
    for name in ("log", "sqrt"):
        fit = fit_function(x, y, name)
        assert all(map(math.isfinite, (fit.a, fit.b, fit.c, fit.d, fit.r2)))
        assert (fit.a * x + fit.b > 0).all()
        assert np.isfinite(fit(x)).all()
    # log approximates sqrt(x + 1.5) well: a sanity check that the constrained search still fits
    if data == "sqrt":
        assert fit_function(x, y, "log").r2 > 0.99


def test_no_admissible_candidate_gives_minus_inf():
    x = np.linspace(0, 1, 20)
    fit = fit_function(x, x, "log", a_range=(1, 2), b_range=(-10, -5))  # a·x + b <= -3 everywhere
    assert fit.r2 == -math.inf and math.isnan(fit.a) and math.isnan(fit.c)
    assert fit_library(x, x, names=["log", "x"], a_range=(1, 2), b_range=(-10, -5))[-1].name == "log"


def test_overflowing_candidates_are_skipped():
    # over x in [0, 100], exp(a·x) overflows for a > 7.1: those grid points must be ignored, not chosen
    x = np.linspace(0, 100, 200)
    y = 2.0 * np.exp(0.05 * x) - 1.0
    fit = fit_function(x, y, "exp")
    assert fit.r2 >= 0.9999
    np.testing.assert_allclose([fit.a, fit.c, fit.d], [0.05, 2.0, -1.0], rtol=1e-4)
