"""Affine map from the domain's bounding box to a model's input range, saved with the model."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from kanpde.models.jet import Jet, Pairs


class BoxNormalizer(nn.Module):
    """Maps ``x`` from the box ``[lower, upper]`` affinely onto ``[target_lo, target_hi]`` per dimension.

    Args:
        lower, upper: (n_in,) the box, e.g. the domain's bounding box; ``None`` means the
            identity on ``[target_lo, target_hi]``.
        n_in: number of inputs (used when no box is given).
    """

    def __init__(
        self,
        n_in: int,
        lower: Sequence[float] | None = None,
        upper: Sequence[float] | None = None,
        target: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        super().__init__()
        if (lower is None) != (upper is None):
            raise ValueError("bounds: give both lower and upper, or neither")
        if lower is None:
            lower, upper = [target[0]] * n_in, [target[1]] * n_in
        lo = torch.as_tensor(lower, dtype=torch.float64).flatten()
        hi = torch.as_tensor(upper, dtype=torch.float64).flatten()
        if lo.numel() != n_in or hi.numel() != n_in:
            raise ValueError(f"bounds: expected {n_in} lower and upper values, got {lo.numel()} and {hi.numel()}")
        if not bool((hi > lo).all()):
            raise ValueError(f"bounds: every upper must exceed its lower, got lower={lo.tolist()} upper={hi.tolist()}")
        self.target = (float(target[0]), float(target[1]))
        scale = (target[1] - target[0]) / (hi - lo)
        self.register_buffer("scale", scale.to(torch.get_default_dtype()))
        self.register_buffer("shift", (target[0] - lo * scale).to(torch.get_default_dtype()))

    def bounds(self) -> tuple[list[float], list[float]]:
        """The box this normaliser maps from, as plain lists (for saving configs)."""
        lo = (self.target[0] - self.shift) / self.scale
        hi = (self.target[1] - self.shift) / self.scale
        return lo.tolist(), hi.tolist()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, n_in) -> (batch, n_in)."""
        return x * self.scale + self.shift

    def forward_jet(self, x: torch.Tensor, pairs: Pairs = ()) -> Jet:
        """The normalised inputs as a jet in x (constant first partials, zero second ones): where a
        model's forward derivative pass starts."""
        return Jet.seed(x, pairs).affine(self.scale, self.shift)
