"""Argument checks shared by the engine, so every bad value fails early with a message naming it."""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``, else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0 with ``allow_zero``), else raise ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def number_in(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False,
              high_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real in [low, high] (either end open as asked), else raise ValueError naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok and low == -math.inf and high == math.inf:
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return float(value)


def one_of(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def widths(name: str, value: Any) -> list[int]:
    """A layer-width list such as ``[2, 10, 1]``: at least two positive integers."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) < 2:
        raise ValueError(f"{name} must be a list of at least two layer widths like [2, 10, 1], got {value!r}")
    return [positive_int(f"{name}[{i}]", w) for i, w in enumerate(value)]


def vector(name: str, x: Any) -> Any:
    """``x`` if it is a 1-D tensor of shape (n,), else a ValueError naming it."""
    import torch  # checks stays importable without torch's import cost for the config checks

    if not isinstance(x, torch.Tensor) or x.ndim != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 1-D tensor of shape (n,), got {shape}")
    return x
