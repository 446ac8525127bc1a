"""Forward propagation of input derivatives ("jets") through a network, layer by layer.

A residual needs a model's value together with its first and second partials in the inputs.
Nested reverse-mode autograd gets them by differentiating the whole graph again for every order;
here each layer instead maps (value, first partials, chosen second partials) of its input to those
of its output by the chain rule, in one forward pass whose cost is a few times a plain forward.
Training still takes the parameter gradient by ordinary autograd through this pass.

For an elementwise map z = s(h) (an activation, or one KAN edge on its input):

    dz/dx_a        = s'(h) · dh/dx_a
    d²z/dx_a dx_b  = s''(h) · dh/dx_a · dh/dx_b + s'(h) · d²h/dx_a dx_b

and a linear map acts on every channel alike (a bias only on the value).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

Pairs = tuple[tuple[int, int], ...]
"""Second partials carried by a jet, as sorted input-index pairs, e.g. ``((0, 0), (1, 1))``."""


class Jet:
    """Values and input derivatives of a batch of activations.

    Args:
        value: (batch, n).
        first: (dim, batch, n) first partials d/dx_a; its batch axis may be 1 (the same for every
            point, as for the inputs themselves), and broadcasts.
        second: (len(pairs), batch or 1, n) second partials d²/dx_a dx_b for the carried pairs, or
            None where they are all zero (the inputs themselves).
        pairs: the second partials carried (sorted pairs, a <= b).

    The three parts are separate tensors, not channels of one: slicing channels out of a stacked
    tensor costs a zero-filled gradient of the whole stack for every slice in the backward pass.
    """

    def __init__(self, value: torch.Tensor, first: torch.Tensor, second: torch.Tensor | None, pairs: Pairs) -> None:
        if value.ndim != 2 or first.ndim != 3 or (second is not None and (second.ndim != 3 or second.shape[0] != len(pairs))):
            raise ValueError(f"jet parts must be value (batch, n), first (dim, batch, n), second ({len(pairs)}, batch, n); "
                             f"got {tuple(value.shape)}, {tuple(first.shape)}, {None if second is None else tuple(second.shape)}")
        self.value = value
        self.first = first
        self.second = second
        self.pairs = pairs

    @property
    def dim(self) -> int:
        """Number of network inputs the derivatives are taken in."""
        return self.first.shape[0]

    @classmethod
    def seed(cls, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        """The jet of the inputs themselves, x: (batch, dim): unit first partials, zero second ones."""
        dim = x.shape[1]
        return cls(x, torch.eye(dim, dtype=x.dtype, device=x.device).unsqueeze(1), None, pairs)

    def first_products(self) -> torch.Tensor:
        """(len(pairs), batch or 1, n): dh/dx_a · dh/dx_b for every carried pair (a, b)."""
        return self._rows(0) * self._rows(1)

    def _rows(self, side: int) -> torch.Tensor:
        """first[a] (side 0) or first[b] (side 1) for every carried pair (a, b): (len(pairs), batch or 1, n).
        Stacked from integer views: indexing with a Python list would copy the index to the device (a sync)."""
        return torch.stack([self.first[p[side]] for p in self.pairs])

    def affine(self, scale: torch.Tensor, shift: torch.Tensor) -> Jet:
        """z = h · scale + shift per feature; scale, shift: (n,)."""
        second = None if self.second is None else self.second * scale
        return Jet(self.value * scale + shift, self.first * scale, second, self.pairs)

    def linear(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Jet:
        """z = h @ weight + bias; weight: (n, m), bias: (m,)."""
        value = self.value @ weight if bias is None else torch.addmm(bias, self.value, weight)
        second = None if self.second is None else self.second @ weight
        return Jet(value, self.first @ weight, second, self.pairs)

    def elementwise(self, s0: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor | None) -> Jet:
        """z = s(h) for an elementwise s with s(h), s'(h), s''(h) given: each (batch, n).

        ``s2`` may be None when the jet carries no second partials.
        """
        second = None
        if self.pairs:
            second = s2 * self.first_products()
            if self.second is not None:
                second = second + s1 * self.second
        return Jet(s0, s1 * self.first, second, self.pairs)

    def plus(self, other: Jet) -> Jet:
        """The jet of the sum of two functions with the same pairs carried."""
        second = self.second if other.second is None else other.second if self.second is None else self.second + other.second
        return Jet(self.value + other.value, self.first + other.first, second, self.pairs)

    def times(self, other: Jet) -> Jet:
        """The jet of the product of two functions (same pairs), by the product rule:
        (fg)_a = f_a g + f g_a,  (fg)_ab = f_ab g + f_a g_b + f_b g_a + f g_ab."""
        value = self.value * other.value
        first = self.first * other.value + self.value * other.first
        second = None
        if self.pairs:
            second = self._rows(0) * other._rows(1) + self._rows(1) * other._rows(0)
            if self.second is not None:
                second = second + self.second * other.value
            if other.second is not None:
                second = second + self.value * other.second
        return Jet(value, first, second, self.pairs)

    def partial(self, wrt: tuple[int, ...]) -> torch.Tensor:
        """d^{len(wrt)}/dx_wrt (wrt sorted, length 0-2; must be carried): (batch, n)."""
        if not wrt:
            return self.value
        if len(wrt) == 1:
            part = self.first[wrt[0]]
        elif self.second is None:
            part = self.value.new_zeros(())
        else:
            part = self.second[self.pairs.index(wrt)]
        return part.expand_as(self.value)

    def has(self, wrt: tuple[int, ...]) -> bool:
        """Whether this jet carries d/dx_wrt (wrt sorted)."""
        return len(wrt) <= 1 or (len(wrt) == 2 and wrt in self.pairs)


def _tanh(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = torch.tanh(h)
    d1 = 1 - t * t
    return t, d1, -2 * t * d1


def _sin(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = torch.sin(h)
    return s, torch.cos(h), -s


def silu_derivatives(h: torch.Tensor, order: int) -> torch.Tensor:
    """silu and its first ``order`` (<= 3) derivatives at h, stacked last: (*h.shape, order+1)."""
    if not 0 <= order <= 3:
        raise ValueError(f"silu derivatives are implemented up to order 3, got {order}")
    s = torch.sigmoid(h)
    ds = s * (1 - s)  # sigmoid'
    out = [h * s, s + h * ds, ds * (2 + h * (1 - 2 * s)), ds * (3 * (1 - 2 * s) + h * (1 - 6 * s + 6 * s * s))]
    return torch.stack(out[: order + 1], dim=-1)


def _gelu(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # exact (erf) GELU, as nn.GELU() computes it: h·Φ(h), Φ' = φ
    phi = torch.exp(-0.5 * h * h) * (2 * torch.pi) ** -0.5
    cdf = 0.5 * (1 + torch.erf(h * 0.5**0.5))
    return h * cdf, cdf + h * phi, phi * (2 - h * h)


def _softplus(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # nn.Softplus() returns h itself above its threshold 20, so its derivatives there are 1 and 0
    # (torch's double backward already switches at h = 20 itself; we follow it)
    s = torch.sigmoid(h)
    return (F.softplus(h), torch.where(h > 20, torch.ones_like(s), s),
            torch.where(h >= 20, torch.zeros_like(s), s * (1 - s)))


ACTIVATION_DERIVATIVES: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
    "tanh": _tanh, "silu": lambda h: tuple(silu_derivatives(h, 2).unbind(-1)), "sin": _sin, "gelu": _gelu, "softplus": _softplus,
}
"""Activation name -> h ↦ (s(h), s'(h), s''(h)), each the shape of h."""


def activation(jet: Jet, name: str) -> Jet:
    """Apply the named activation to a jet."""
    return jet.elementwise(*ACTIVATION_DERIVATIVES[name](jet.value))


def all_pairs(dim: int, mixed: bool) -> Pairs:
    """The diagonal pairs ((0,0), (1,1), ...) or, with ``mixed``, every (a, b) with a <= b."""
    if mixed:
        return tuple((a, b) for a in range(dim) for b in range(a, dim))
    return tuple((a, a) for a in range(dim))


def _defined_in(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def supports_jet(model: object) -> bool:
    """Whether ``model`` offers ``forward_jet(x, pairs) -> Jet`` (the forward derivative back end).

    A subclass that overrides ``forward`` but not ``forward_jet`` does not: the inherited jet
    would compute the parent's function, not the one ``forward`` defines.
    """
    delegate = getattr(model, "jet_supported", None)
    if callable(delegate):  # wrappers (e.g. a hard-constraint transform) answer for the model they wrap
        return bool(delegate())
    jet_cls = _defined_in(type(model), "forward_jet")
    forward_cls = _defined_in(type(model), "forward")
    return jet_cls is not None and forward_cls is not None and issubclass(jet_cls, forward_cls)

