"""Hard constraints: boundary and initial values imposed exactly by the form of the solution.

The network output N(x) is turned into u(x) = lift(x) + distance(x)·N(x), where ``distance``
vanishes on the constrained boundary (and is positive inside) and ``lift`` takes the prescribed
values there.  Then u meets those conditions for any network, and their loss terms drop out.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import nn

from kanpde.models.jet import Jet, Pairs, supports_jet

FieldFn = Callable[[torch.Tensor], torch.Tensor]
"""A function of the points, x: (n, dim) -> (n, n_out)."""


def function_jet(fn: FieldFn, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
    """Value, first partials and the second partials ``pairs`` of ``fn`` at x: (n, dim), by autograd.

    Meant for the small closed-form functions of a hard constraint (no parameters).  When x
    requires grad the result keeps its graph to x (for higher-order partials); otherwise it is detached.
    """
    graph = x.requires_grad
    xg = x if graph else x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(xg)
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(f"a hard-constraint function must return (n, n_out) for n = {x.shape[0]} points, got {tuple(y.shape)}")
        n_out = y.shape[1]

        def grad(z: torch.Tensor, keep: bool) -> torch.Tensor:
            if not z.requires_grad:
                return torch.zeros_like(xg)
            (g,) = torch.autograd.grad(z.sum(), xg, create_graph=keep, retain_graph=True, allow_unused=True)
            return torch.zeros_like(xg) if g is None else g

        grads = [grad(y[:, o], bool(pairs) or graph) for o in range(n_out)]  # each (n, dim)
        first = torch.stack([g.T for g in grads], dim=2)  # (dim, n, n_out)
        second = None
        if pairs:
            rows = []
            for a, b in pairs:
                rows.append(torch.stack([grad(first[a, :, o], graph)[:, b] for o in range(n_out)], dim=1))
            second = torch.stack(rows)
    jet = Jet(y, first, second, pairs)
    if not graph:
        jet = Jet(y.detach(), first.detach(), None if second is None else second.detach(), pairs)
    return jet


class HardConstraint(nn.Module):
    """u(x) = lift(x) + distance(x) · net(x), x: (batch, dim) -> (batch, n_out).

    Args:
        net: the network, (batch, dim) -> (batch, n_out).
        distance: (n, dim) -> (n, n_out), zero where a value is imposed, positive inside.
        lift: (n, dim) -> (n, n_out), the imposed values there.

    Attributes the trainer asks of a model (``grid``, ``extend_grid``, ``n_params`` ...) are the
    wrapped network's.  ``distance`` and ``lift`` jets are computed by autograd and reused while
    the same points come back (the collocation points of a training run).
    """

    def __init__(self, net: nn.Module, distance: FieldFn, lift: FieldFn) -> None:
        super().__init__()
        self.net = net
        self.distance = distance
        self.lift = lift
        self._cached: tuple[weakref.ref, int, Pairs, Jet, Jet] | None = None

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net":
                raise
            return getattr(self._modules["net"], name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lift(x) + self.distance(x) * self.net(x)

    def jet_supported(self) -> bool:
        """Whether the forward derivative back end applies: when the wrapped network has one."""
        return supports_jet(self.net)

    def _fixed_jets(self, x: torch.Tensor, pairs: Pairs) -> tuple[Jet, Jet]:
        c = self._cached
        if not x.requires_grad and c is not None and c[0]() is x and c[1] == x._version and c[2] == pairs:
            return c[3], c[4]
        d, lift = function_jet(self.distance, x, pairs), function_jet(self.lift, x, pairs)
        if not x.requires_grad:
            self._cached = (weakref.ref(x), x._version, pairs, d, lift)
        return d, lift

    def forward_jet(self, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        """The jet of u from the network's jet by the product rule (see :meth:`Jet.times`)."""
        if not supports_jet(self.net):
            raise ValueError(f"{type(self.net).__name__} has no forward_jet; use derivatives=autograd")
        d, lift = self._fixed_jets(x, pairs)
        return lift.plus(d.times(self.net.forward_jet(x, pairs)))
