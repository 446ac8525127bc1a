"""Derivatives of a model's outputs by input name: what residuals and conditions ask for.

Residual code never calls ``torch.autograd.grad`` itself; it asks a :class:`Fields` object for
``f["u"]``, ``f.d("u", "x", "x")``, ``f.grad("u")`` or ``f.laplacian("u")``.  Today every
derivative comes from nested reverse-mode autograd (the reference back end); a faster back end
supplied by a model can slot in here without changing any residual.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Fields:
    """A model evaluated at points ``x``, with its derivatives computed on demand and cached.

    Args:
        model: maps (batch, n_in) -> (batch, n_out).
        x: (batch, n_in) points.
        inputs: names of the input columns, e.g. ``("x", "y")``.
        outputs: names of the output columns, e.g. ``("u",)``.

    Every derivative keeps its graph, so it can enter a training loss.  Each mixed partial is computed once: ``d("u", "x", "y")`` and ``d("u", "y", "x")`` share a
    cache entry, as they are equal for the smooth models used here.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        inputs: Sequence[str],
        outputs: Sequence[str],
    ) -> None:
        if x.ndim != 2 or x.shape[1] != len(inputs):
            raise ValueError(f"x must have shape (batch, {len(inputs)}) for inputs {tuple(inputs)}, got {tuple(x.shape)}")
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.x = x if x.requires_grad else x.detach().requires_grad_(True)
        self.y = model(self.x)
        if self.y.ndim != 2 or self.y.shape[1] != len(outputs):
            raise ValueError(f"model output must have shape (batch, {len(outputs)}) for outputs {self.outputs}, got {tuple(self.y.shape)}")
        # (output index, sorted tuple of input indices) -> (batch,) tensor
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

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
        if key not in self._cache:
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
