"""Models: B-spline KAN and MLP, both mapping x: (batch, n_in) to (batch, n_out)."""
from .kan import KAN, KANLayer
from .mlp import MLP

__all__ = ["KAN", "KANLayer", "MLP"]
