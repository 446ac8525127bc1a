"""A symbolic KAN as a sympy formula in the problem's input names.

Every edge is c·f(a·x + b) + d and every node a sum, so the network's output is a composition of
library functions; the input normalisation (domain box -> grid range) is part of it.  With
``digits`` the formula is also cleaned (:func:`clean`): inside function arguments, numbers within that
relative precision of a simple rational multiple of 1 or pi become it exactly and negligible terms
go; the expression is expanded, terms below that precision relative to the largest are dropped,
the rest rounded to that many significant digits (or snapped to a simple rational), and simplified.  Errors of the cleaned formula must then be measured (:func:`evaluate`), not assumed.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import sympy as sp
import torch

from kanpde.models.functions import function
from kanpde.models.kan import KAN
from kanpde.interpret.network import kan_of

MAX_DENOMINATOR = 12
"""Snapping to rationals p/q (times 1 or pi) uses denominators up to this."""


def raw_formula(model: KAN, inputs: Sequence[str]) -> list[sp.Expr]:
    """One exact sympy expression per output, in the symbols ``inputs``; every edge must be symbolic or pruned."""
    net = kan_of(model)
    if len(inputs) != net.width[0]:
        raise ValueError(f"formula needs {net.width[0]} input name(s), got {list(inputs)}")
    numeric = [(l, i, o) for l, layer in enumerate(net.layers) for i in range(layer.in_features)
               for o in range(layer.out_features) if layer.edge_kind(i, o) == "numeric"]
    if numeric:
        shown = ", ".join(f"layer {l} edge {i}->{o}" for l, i, o in numeric[:3]) + (" ..." if len(numeric) > 3 else "")
        raise ValueError(f"the network has {len(numeric)} numeric edge(s) ({shown}); a formula needs every edge symbolic (auto_symbolic)")
    scale = net.normalize.scale.detach().cpu().tolist()
    shift = net.normalize.shift.detach().cpu().tolist()
    nodes: list[sp.Expr] = [sp.Float(s, 17) * sp.Symbol(n) + sp.Float(t, 17) for n, s, t in zip(inputs, scale, shift)]
    for layer in net.layers:
        out: list[sp.Expr] = [sp.Integer(0)] * layer.out_features
        if layer.symbolic is not None:
            p = layer.symbolic.params().detach().cpu().tolist()
            for i, o, name in layer.symbolic.edges():
                if name == "0":
                    continue
                a, b, c, d = (sp.Float(v, 17) for v in p[i][o])
                out[o] = out[o] + c * function(name).sympy(a * nodes[i] + b) + d
        nodes = out
    return nodes


def snap(value: float, digits: int, constants: Sequence[str] = ("1", "pi")) -> sp.Expr:
    """``value`` as p/q times one of ``constants`` (q <= MAX_DENOMINATOR) when within 10^-digits relative of
    one, else rounded to ``digits`` significant digits."""
    if value == 0 or not math.isfinite(value):
        return sp.Integer(0) if value == 0 else sp.Float(value)
    tol = 10.0 ** -digits * abs(value)
    for q in range(1, MAX_DENOMINATOR + 1):  # the smallest denominator wins: pi rather than 22/7
        for name in constants:
            const, symbol = (1.0, sp.Integer(1)) if name == "1" else (math.pi, sp.pi)
            p = round(value / const * q)
            if p != 0 and abs(value - p / q * const) <= tol:
                return sp.Rational(p, q) * symbol
    return sp.Float(float(f"{value:.{digits}g}"), digits)


def _snap_all(expr: sp.Expr, digits: int, constants: Sequence[str]) -> sp.Expr:
    return expr.xreplace({f: snap(float(f), digits, constants) for f in expr.atoms(sp.Float)})


def _drop_small_terms(expr: sp.Expr, digits: int) -> sp.Expr:
    """The sum ``expr`` without the terms whose numeric factor is below 10^-digits of the largest one's."""
    terms = sp.Add.make_args(sp.expand(expr))
    sizes = [abs(float(t.as_coeff_Mul()[0])) for t in terms]
    largest = max(sizes, default=0.0)
    return sp.Add(*[t for t, s in zip(terms, sizes) if s > 10.0 ** -digits * largest])


def _tidy_arguments(expr: sp.Expr, digits: int) -> sp.Expr:
    """Inside every function application (sin, exp, ...): snap the numbers (to rational multiples of 1 or
    pi, where an argument's period or scale makes them likely) and drop negligible terms, sin(3.14159*y + 1e-7) -> sin(pi*y)."""
    def tidy(f: sp.Expr) -> sp.Expr:
        return f.func(*(_drop_small_terms(_snap_all(_tidy_arguments(a, digits), digits, ("1", "pi")), digits) for a in f.args))
    return expr.replace(lambda e: isinstance(e, sp.Function) and bool(e.args), tidy)


def clean(expr: sp.Expr, digits: int) -> sp.Expr:
    """Tidy the function arguments, expand (equal terms combine), drop terms below 10^-digits of the
    largest, round the remaining numbers (snapping to simple rationals), simplify."""
    expr = _drop_small_terms(_tidy_arguments(expr, digits), digits)
    expr = _snap_all(expr, digits, ("1",))
    if sp.count_ops(expr) <= 200:  # simplify is slow on large expressions; small ones gain most from it
        simpler = sp.simplify(expr)
        expr = simpler if sp.count_ops(simpler) <= sp.count_ops(expr) else expr
    return expr


def formula(model: KAN, inputs: Sequence[str], digits: int | None = 4) -> list[sp.Expr]:
    """The network as one sympy expression per output (see the module docstring; ``digits=None``: exact, uncleaned)."""
    exprs = raw_formula(model, inputs)
    if digits is None:
        return exprs
    if not (isinstance(digits, int) and digits >= 1):
        raise ValueError(f"digits must be a positive integer or None, got {digits!r}")
    return [clean(e, digits) for e in exprs]


def evaluate(exprs: Sequence[sp.Expr], inputs: Sequence[str], x: Any) -> np.ndarray:
    """The formulas at points x: (n, len(inputs)) with numpy alone -> (n, len(exprs)) float64."""
    x = x.detach().cpu().to(torch.float64).numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    symbols = [sp.Symbol(n) for n in inputs]
    cols = []
    for e in exprs:
        fn = sp.lambdify(symbols, e, "numpy")
        cols.append(np.broadcast_to(np.asarray(fn(*x.T), dtype=np.float64), (x.shape[0],)))
    return np.stack(cols, axis=1)


def to_text(exprs: Sequence[sp.Expr], outputs: Sequence[str]) -> str:
    """``u = ...`` lines, one per output."""
    return "; ".join(f"{o} = {sp.sstr(e)}" for o, e in zip(outputs, exprs))
