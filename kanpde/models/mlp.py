"""Fully connected network (the physics-informed MLP baseline)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from kanpde import checks
from kanpde.models.embedding import embedding_from
from kanpde.models.jet import Jet, Pairs, activation
from kanpde.models.normalize import BoxNormalizer

ACTIVATIONS = {"tanh": nn.Tanh, "silu": nn.SiLU, "sin": None, "gelu": nn.GELU, "softplus": nn.Softplus}


class Sine(nn.Module):
    """sin(x), as used by SIREN-style PINNs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


class MLP(nn.Module):
    """An MLP of widths ``width`` (e.g. ``[2, 100, 100, 100, 1]``), x: (batch, width[0]) -> (batch, width[-1]).

    Inputs are mapped from ``bounds = (lower, upper)`` onto [-1, 1] first, like the KAN's.
    Weights use Xavier-normal initialisation and zero biases, the usual PINN choice.

    Args:
        width: layer widths, input first.
        activation: one of ``tanh``, ``silu``, ``sin``, ``gelu``, ``softplus``.
        bounds: ``(lower, upper)`` of the inputs, or None if they already lie in [-1, 1].
        embedding: input features before the first layer, as for :class:`~kanpde.models.KAN`
            (:mod:`kanpde.models.embedding`); the first layer then has one input per feature.
    """

    def __init__(
        self,
        width: Sequence[int],
        activation: str = "tanh",
        bounds: tuple[Sequence[float], Sequence[float]] | None = None,
        embedding: dict | None = None,
    ) -> None:
        super().__init__()
        self.width = checks.widths("width", width)
        self.activation = checks.one_of("activation", activation, tuple(ACTIVATIONS))
        lower, upper = bounds if bounds is not None else (None, None)
        self.normalize = BoxNormalizer(self.width[0], lower, upper)
        self.embedding = embedding_from(self.width[0], embedding, self.normalize.target)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip([self.embedding.n_out, *self.width[1:-1]], self.width[1:])):
            linear = nn.Linear(a, b)
            nn.init.xavier_normal_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers.append(linear)
            if i < len(self.width) - 2:
                act = ACTIVATIONS[self.activation]
                layers.append(Sine() if act is None else act())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, width[0]) -> (batch, width[-1])."""
        h = self.normalize(x)
        return self.net(self.embedding(h) if self.embedding.active else h)

    def forward_jet(self, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        """Value, first partials and the second partials ``pairs`` of the output at x: (batch, width[0]),
        propagated layer by layer (see :mod:`kanpde.models.jet`)."""
        jet = self.normalize.forward_jet(x, pairs)
        if self.embedding.active:
            jet = self.embedding.forward_jet(jet)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                jet = jet.linear(layer.weight.T, layer.bias)
            else:
                jet = activation(jet, self.activation)
        return jet

    def n_params(self) -> int:
        """Number of trainable parameters (weights and biases)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this architecture."""
        lower, upper = self.normalize.bounds()
        return {"width": list(self.width), "activation": self.activation, "bounds": (lower, upper),
                "embedding": self.embedding.spec()}
