"""Library of named 1-D functions that a symbolic KAN edge can take, as c·f(a·x + b) + d.

Each :class:`Function` gives f in three forms: torch (with closed-form derivatives up to any
order, so a symbolic edge can feed the jet propagation of ``kanpde.models.jet`` without nested
autograd), numpy (for fast fitting, ``kanpde.interpret.fit``) and sympy (for printing formulas;
sympy is imported only when asked for).  ``complexity`` ranks forms from simple to elaborate so
that a fit can prefer the simpler of two nearly equal candidates.  Inner parameters that would be
redundant (x: a and b; x^n: a; exp: b, which only rescales c) are fixed so that fits are
identifiable.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["Function", "LIBRARY", "function"]


@dataclass(frozen=True)
class Function:
    """A named 1-D function f for an edge c·f(a·x + b) + d.

    Attributes:
        name: key in :data:`LIBRARY`, e.g. ``"sin"``.
        complexity: small integer; larger means a less preferred form.
        domain: ``"all"``, or ``"positive"`` when f needs an argument > 0 (log, sqrt).
        fit_a: whether the inner scale a is searched (False: a = 1).
        fit_b: whether the inner shift b is searched (False: b = 0).
    """

    name: str
    complexity: int
    domain: str
    fit_a: bool
    fit_b: bool
    _derivatives: Callable[[torch.Tensor, int], list[torch.Tensor]] = field(repr=False, compare=False)
    _sympy: Callable[[Any, Any], Any] = field(repr=False, compare=False)
    _numpy: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)

    def derivatives(self, z: torch.Tensor, order: int) -> list[torch.Tensor]:
        """[f(z), f'(z), ..., f^(order)(z)], each the shape of z, in closed form.

        Built from torch ops only and connected to z (constant entries too), so autograd can
        differentiate any of them further.
        """
        if order < 0:
            raise ValueError(f"derivative order must be >= 0, got {order}")
        return self._derivatives(z, order)

    def sympy(self, z: Any) -> Any:
        """The sympy expression f(z) for a sympy expression z."""
        import sympy

        return self._sympy(sympy, z)

    def numpy(self, z: np.ndarray) -> np.ndarray:
        """f(z) elementwise for a numpy array z (nan outside the domain)."""
        return self._numpy(np.asarray(z))


def _zero(z: torch.Tensor) -> torch.Tensor:
    # 0·z rather than zeros_like(z): stays in z's graph, so autograd.grad through it needs no allow_unused
    return z * 0


def _powers(n: int) -> Callable[[torch.Tensor, int], list[torch.Tensor]]:
    def derivatives(z: torch.Tensor, order: int) -> list[torch.Tensor]:
        # d^k/dz^k z^n = n!/(n-k)! z^(n-k), zero for k > n
        return [factorial(n) // factorial(n - k) * z ** (n - k) if k < n
                else _zero(z) + factorial(n) if k == n else _zero(z) for k in range(order + 1)]
    return derivatives


def _exp(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    e = torch.exp(z)
    return [e] * (order + 1)


def _log(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    # d^k/dz^k log z = (-1)^(k-1) (k-1)! z^(-k) for k >= 1
    out, inv = [torch.log(z)], 1 / z
    for k in range(1, order + 1):
        out.append((-1) ** (k - 1) * factorial(k - 1) * inv ** k)
    return out


def _sqrt(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    # d^k/dz^k z^(1/2) = (1/2)(1/2 - 1)...(1/2 - k + 1) · z^(1/2) / z^k
    s, inv = torch.sqrt(z), 1 / z
    out, coef = [s], 1.0
    for k in range(1, order + 1):
        coef *= 0.5 - (k - 1)
        out.append(coef * s * inv ** k)
    return out


def _sin(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    s, c = torch.sin(z), torch.cos(z)
    cycle = [s, c, -s, -c]
    return [cycle[k % 4] for k in range(order + 1)]


def _cos(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    s, c = torch.sin(z), torch.cos(z)
    cycle = [c, -s, -c, s]
    return [cycle[k % 4] for k in range(order + 1)]


def _poly_derivative(p: list[int]) -> list[int]:
    """Coefficients (lowest power first) of the derivative of the polynomial p."""
    return [i * p[i] for i in range(1, len(p))] or [0]


def _poly_add(p: list[int], q: list[int]) -> list[int]:
    n = max(len(p), len(q))
    return [(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n)]


def _horner(p: list[int], t: torch.Tensor) -> torch.Tensor:
    out = _zero(t) + p[-1]
    for coef in reversed(p[:-1]):
        out = out * t + coef
    return out


def _tanh(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    # f^(k) = P_k(t) with t = tanh z: P_0 = t and, as dt/dz = 1 - t², P_(k+1) = P_k'(t)·(1 - t²)
    t = torch.tanh(z)
    p, out = [0, 1], [t]
    for _ in range(order):
        dp = _poly_derivative(p)
        p = _poly_add(dp, [0, 0] + [-c for c in dp])
        out.append(_horner(p, t))
    return out


def _gaussian(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    # f^(k) = Q_k(z)·exp(-z²): Q_0 = 1, Q_(k+1) = Q_k' - 2z·Q_k
    g = torch.exp(-z * z)
    q, out = [1], [g]
    for _ in range(order):
        q = _poly_add(_poly_derivative(q), [0] + [-2 * c for c in q])
        out.append(_horner(q, z) * g)
    return out


def _abs(z: torch.Tensor, order: int) -> list[torch.Tensor]:
    # the kink at 0 is taken as sign(0) = 0 and zero higher derivatives
    return [torch.abs(z), torch.sign(z)][: order + 1] + [_zero(z) for _ in range(order - 1)]


def _np_positive(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def g(z: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return f(z)
    return g


_ENTRIES: list[Function] = [
    Function("0", 0, "all", False, False, lambda z, n: [_zero(z) for _ in range(n + 1)],
             lambda sp, z: sp.Integer(0), lambda z: np.zeros_like(z, dtype=np.result_type(z, 0.0))),
    Function("x", 1, "all", False, False, _powers(1), lambda sp, z: z, lambda z: z.astype(np.result_type(z, 0.0))),
    Function("x^2", 2, "all", False, True, _powers(2), lambda sp, z: z**2, lambda z: z**2.0),
    Function("x^3", 3, "all", False, True, _powers(3), lambda sp, z: z**3, lambda z: z**3.0),
    Function("x^4", 3, "all", False, True, _powers(4), lambda sp, z: z**4, lambda z: z**4.0),
    Function("exp", 2, "all", True, False, _exp, lambda sp, z: sp.exp(z), np.exp),
    Function("log", 2, "positive", True, True, _log, lambda sp, z: sp.log(z), _np_positive(np.log)),
    Function("sqrt", 2, "positive", True, True, _sqrt, lambda sp, z: sp.sqrt(z), _np_positive(np.sqrt)),
    Function("sin", 2, "all", True, True, _sin, lambda sp, z: sp.sin(z), np.sin),
    Function("cos", 2, "all", True, True, _cos, lambda sp, z: sp.cos(z), np.cos),
    Function("tanh", 3, "all", True, True, _tanh, lambda sp, z: sp.tanh(z), np.tanh),
    Function("abs", 3, "all", True, True, _abs, lambda sp, z: sp.Abs(z), np.abs),
    Function("gaussian", 3, "all", True, True, _gaussian, lambda sp, z: sp.exp(-z**2), lambda z: np.exp(-z * z)),
]

LIBRARY: dict[str, Function] = {f.name: f for f in _ENTRIES}
"""All candidate functions by name, simplest first."""


def function(name: str) -> Function:
    """The library function called ``name``; ValueError naming the known ones if there is none."""
    try:
        return LIBRARY[name]
    except KeyError:
        raise ValueError(f"unknown symbolic function {name!r}; known: {', '.join(LIBRARY)}") from None
