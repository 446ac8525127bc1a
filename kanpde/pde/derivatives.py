"""Derivatives of a model's outputs by input name: what residuals and conditions ask for.

Residual code never calls ``torch.autograd.grad`` itself; it asks a :class:`Fields` object for
``f["u"]``, ``f.d("u", "x", "x")``, ``f.grad("u")`` or ``f.laplacian("u")``.  Two back ends
compute them:

* ``forward``: models with ``forward_jet`` (KAN, MLP) return value, first and second partials in
  one pass, propagated layer by layer (:mod:`kanpde.models.jet`); partials above second order continue
  from there by autograd.
* ``autograd``: nested reverse-mode autograd, for any model (the reference).

``auto`` (the default) takes ``forward`` when the model offers it.  Both give the same numbers to
rounding (the tests hold them to 1e-10 relative in float64).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from kanpde import checks
from kanpde.models.jet import Jet, Pairs, all_pairs, supports_jet

BACKENDS = ("auto", "forward", "autograd")


class Plan(NamedTuple):
    """What a residual asked of the forward back end: the second partials to carry, and whether it
    asked for higher ones (which autograd takes from there, so ``x`` must carry a graph)."""

    pairs: Pairs
    higher: bool = False


def resolve_backend(model: nn.Module, backend: str = "auto") -> str:
    """The back end ``backend`` means for ``model``: ``forward`` or ``autograd``.

    Raises ValueError for an unknown name, or for ``forward`` with a model that cannot propagate jets.
    """
    backend = checks.one_of("derivatives", backend, BACKENDS)
    if backend == "auto":
        return "forward" if supports_jet(model) else "autograd"
    if backend == "forward" and not supports_jet(model):
        raise ValueError(f"derivatives=forward needs a model whose forward_jet matches its forward (KAN, MLP); "
                         f"{type(model).__name__} has none, or overrides forward only: use derivatives=auto or autograd")
    return backend


class Fields:
    """A model evaluated at points ``x``, with its derivatives computed on demand and cached.

    Args:
        model: maps (batch, n_in) -> (batch, n_out).
        x: (batch, n_in) points.
        inputs: names of the input columns, e.g. ``("x", "y")``.
        outputs: names of the output columns, e.g. ``("u",)``.
        backend: ``auto``, ``forward`` or ``autograd`` (see the module docstring).
        plan: what the forward back end should compute up front (``None``: whatever is asked, on
            demand).  :attr:`plan` after a residual says what it needed; passing that to the next
            ``Fields`` for the same residual makes one pass suffice.

    The model runs when something is first asked for (so a wrong output count fails there).
    Every derivative keeps its graph, so it can enter a training loss.  Each mixed partial is
    computed once: ``d("u", "x", "y")`` and ``d("u", "y", "x")`` share a cache entry, as they are
    equal for the smooth models used here.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        inputs: Sequence[str],
        outputs: Sequence[str],
        backend: str = "auto",
        plan: Plan | None = None,
    ) -> None:
        if x.ndim != 2 or x.shape[1] != len(inputs):
            raise ValueError(f"x must have shape (batch, {len(inputs)}) for inputs {tuple(inputs)}, got {tuple(x.shape)}")
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.model = model
        self.backend = resolve_backend(model, backend)
        # the forward back end needs no graph to x unless a partial above second order is asked for
        autograd_x = self.backend == "autograd" or (plan is not None and plan.higher)
        self.x = x.detach().requires_grad_(True) if autograd_x and not x.requires_grad else x
        self._y: torch.Tensor | None = None
        self._jet: Jet | None = None
        self._higher = autograd_x and self.backend == "forward"
        # (output index, sorted tuple of input indices) -> (batch,) tensor
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
        if plan is not None and self.backend == "forward":
            self._propagate(plan.pairs)

    def _checked(self, y: torch.Tensor) -> torch.Tensor:
        if y.ndim != 2 or y.shape[1] != len(self.outputs):
            raise ValueError(f"model output must have shape (batch, {len(self.outputs)}) for outputs {self.outputs}, got {tuple(y.shape)}")
        return y

    @property
    def y(self) -> torch.Tensor:
        """The model's outputs, (batch, n_out)."""
        if self._y is None:
            self._y = self._checked(self.model(self.x))
        return self._y

    @property
    def plan(self) -> Plan | None:
        """What the forward pass had to carry for the derivatives asked so far (None if none were)."""
        return None if self._jet is None else Plan(self._jet.pairs, self._higher)

    def _propagate(self, pairs: Pairs) -> None:
        """One forward-derivative pass carrying ``pairs``; fills the cache for every output."""
        jet = self.model.forward_jet(self.x, pairs)
        self._checked(jet.value)
        self._jet = jet
        if self._y is None:
            self._y = jet.value
        for o in range(len(self.outputs)):
            for a in range(len(self.inputs)):
                self._cache[(o, (a,))] = jet.partial((a,))[:, o]
            for p in pairs:
                self._cache[(o, p)] = jet.partial(p)[:, o]

    def _forward_partial(self, key: tuple[int, tuple[int, ...]]) -> torch.Tensor | None:
        """``key`` from the forward back end, widening the jet if it lacks it.

        Above second order it returns None, after making sure the jet's channels carry their graph
        to ``x``, so that autograd can continue from them.
        """
        if self.backend != "forward":
            return None
        wrt = key[1]
        have = set(self._jet.pairs) if self._jet is not None else set()
        if len(wrt) > 2:
            self._higher = True
            if not self.x.requires_grad:
                self.x = self.x.detach().requires_grad_(True)
                self._cache.clear()
                self._propagate(tuple(sorted(have | set(all_pairs(len(self.inputs), mixed=True)))))
            return None
        if self._jet is None or not self._jet.has(wrt):
            dim = len(self.inputs)
            if len(wrt) == 2:  # a residual that asks one diagonal partial usually asks them all
                have |= set(all_pairs(dim, mixed=wrt[0] != wrt[1] or any(a != b for a, b in have)))
            self._propagate(tuple(sorted(have)))
        return self._cache[key]

    def _out(self, name: str) -> int:
        try:
            return self.outputs.index(name)
        except ValueError:
            raise KeyError(f"unknown output {name!r}; outputs are {self.outputs}") from None

    def _in(self, name: str) -> int:
        try:
            return self.inputs.index(name)
        except ValueError:
            raise KeyError(f"unknown input {name!r}; inputs are {self.inputs}") from None

    def __getitem__(self, name: str) -> torch.Tensor:
        """An output (``f["u"]``) or an input coordinate (``f["x"]``) as a (batch,) tensor."""
        if name in self.outputs:
            return self.y[:, self.outputs.index(name)]
        if name in self.inputs:
            return self.x[:, self.inputs.index(name)]
        raise KeyError(f"unknown name {name!r}; inputs are {self.inputs}, outputs are {self.outputs}")

    def _partial(self, o: int, wrt: tuple[int, ...]) -> torch.Tensor:
        key = (o, tuple(sorted(wrt)))
        if not key[1]:
            return self.y[:, o]
        if key not in self._cache and self._forward_partial(key) is None:
            lower = self._partial(o, key[1][:-1])
            if lower.requires_grad:
                (g,) = torch.autograd.grad(lower.sum(), self.x, create_graph=True, allow_unused=True)
            else:
                g = None
            if g is None:  # the lower derivative does not depend on x: all further ones vanish
                g = torch.zeros_like(self.x)
            for j in range(len(self.inputs)):
                self._cache[(o, tuple(sorted(key[1][:-1] + (j,))))] = g[:, j]
        return self._cache[key]

    def d(self, output: str, *wrt: str) -> torch.Tensor:
        """Partial derivative of ``output`` with respect to the inputs named in ``wrt`` (any order).

        ``f.d("u", "x")`` is du/dx, ``f.d("u", "x", "x")`` is d2u/dx2, ``f.d("u", "x", "y")`` the mixed
        partial.  Returns (batch,).
        """
        return self._partial(self._out(output), tuple(self._in(w) for w in wrt))

    def grad(self, output: str) -> torch.Tensor:
        """Gradient of ``output`` with respect to all inputs: (batch, n_in)."""
        o = self._out(output)
        return torch.stack([self._partial(o, (j,)) for j in range(len(self.inputs))], dim=1)

    def laplacian(self, output: str, wrt: Sequence[str] | None = None) -> torch.Tensor:
        """Sum of the second partials of ``output`` over ``wrt`` (default: all inputs). Returns (batch,).

        For space-time problems pass the spatial names, e.g. ``wrt=("x", "y")``.
        """
        o = self._out(output)
        names = self.inputs if wrt is None else tuple(wrt)
        return sum(self._partial(o, (self._in(n), self._in(n))) for n in names)
