"""Symbolic edges: a KAN edge that computes c·f(a·x + b) + d for a named library function f.

A layer holds at most one :class:`SymbolicEdges`; each of its edges is either numeric (the
basis series plus silu), symbolic (this module) or pruned (neither).  The four numbers of every
symbolic edge train with the rest of the network; those a function fixes for identifiability
(``x``: a = 1, b = 0; ``exp``: b = 0; ...) stay fixed.  Derivatives of any order come from the
function's closed form (:meth:`kanpde.models.functions.Function.derivatives`), so the forward
derivative pass stays exact.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from kanpde.models.functions import function

FIXED = (1.0, 0.0, 0.0, 0.0)
"""Values of (a, b, c, d) that a function does not fit."""


class SymbolicEdges(nn.Module):
    """The symbolic edges of one layer of ``in_features * out_features`` edges.

    ``names[i][o]`` is the function on edge i -> o, or None where the edge is not symbolic.
    ``affine[i, o] = (a, b, c, d)``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.names: list[list[str | None]] = [[None] * out_features for _ in range(in_features)]
        self.affine = nn.Parameter(torch.tensor(FIXED).repeat(in_features, out_features, 1))
        self.register_buffer("free", torch.zeros(in_features, out_features, 4))
        self._index()

    def set(self, i: int, o: int, name: str | None, params: Sequence[float] | None = None) -> None:
        """Put function ``name`` (None: none) on edge i -> o with ``params = (a, b, c, d)`` (default 1, 0, 1, 0)."""
        with torch.no_grad():
            if name is None:
                self.free[i, o] = 0.0
                self.affine[i, o] = torch.tensor(FIXED, dtype=self.affine.dtype)
            else:
                f = function(name)
                free = [float(f.fit_a), float(f.fit_b), 1.0, 1.0] if name != "0" else [0.0] * 4
                self.free[i, o] = torch.tensor(free, dtype=self.free.dtype)
                given = (1.0, 0.0, 1.0, 0.0) if params is None else tuple(float(p) for p in params)
                if len(given) != 4:
                    raise ValueError(f"symbolic edge parameters are (a, b, c, d), got {len(given)} values")
                value = [g if fr else fx for g, fr, fx in zip(given, free, FIXED)]
                self.affine[i, o] = torch.tensor(value, dtype=self.affine.dtype)
        self.names[i][o] = name
        self._index()

    def _index(self) -> None:
        """Edges grouped by function: ``groups`` is [(name, rows)], rows (n,) flat indices i·out + o."""
        by_name: dict[str, list[int]] = {}
        for i, row in enumerate(self.names):
            for o, name in enumerate(row):
                if name is not None and name != "0":
                    by_name.setdefault(name, []).append(i * self.out_features + o)
        self.groups = [(function(n), torch.tensor(rows, dtype=torch.long)) for n, rows in sorted(by_name.items())]

    @property
    def count(self) -> int:
        """Number of symbolic edges (``0`` included)."""
        return sum(n is not None for row in self.names for n in row)

    def edges(self) -> Iterator[tuple[int, int, str]]:
        """(i, o, name) of every symbolic edge."""
        for i, row in enumerate(self.names):
            for o, name in enumerate(row):
                if name is not None:
                    yield i, o, name

    def params(self) -> torch.Tensor:
        """(in, out, 4): (a, b, c, d) of every edge, the fixed entries at their fixed values."""
        fixed = torch.tensor(FIXED, dtype=self.affine.dtype, device=self.affine.device)
        return self.affine * self.free + fixed * (1 - self.free)

    def n_params(self) -> int:
        """Trained numbers: the free ones of (a, b, c, d) on every symbolic edge."""
        return int(self.free.sum().item())

    def derivatives(self, h: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """h: (batch, in) -> ``order + 1`` tensors (batch, in, out): the d-th derivative of every
        symbolic edge at its input, zero on the other edges."""
        batch = h.shape[0]
        p = self.params().flatten(0, 1)  # (in*out, 4)
        out = [h.new_zeros(batch, self.in_features * self.out_features) for _ in range(order + 1)]
        if self.groups and self.groups[0][1].device != h.device:  # once per device, not on every call
            self.groups = [(f, rows.to(h.device)) for f, rows in self.groups]
        for f, rows in self.groups:
            a, b, c, d = p[rows].unbind(1)
            z = h[:, rows // self.out_features] * a + b  # (batch, n)
            scale = c
            for k, value in enumerate(f.derivatives(z, order)):
                term = scale * value + (d if k == 0 else 0.0)
                out[k] = out[k].index_add(1, rows, term)
                scale = scale * a
        return tuple(o.view(batch, self.in_features, self.out_features) for o in out)

    def get_extra_state(self) -> dict:
        return {"names": [list(r) for r in self.names]}

    def set_extra_state(self, state: dict) -> None:
        self.names = [list(r) for r in state["names"]]
        self._index()

    def extra_repr(self) -> str:
        return ", ".join(f"{i}->{o}: {n}" for i, o, n in self.edges())
