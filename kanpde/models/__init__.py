"""Models: KAN (B-spline, Chebyshev or RBF edges) and MLP, both mapping x: (batch, n_in) to (batch, n_out)."""
from .chebyshev import ChebyshevKANLayer
from .edge import EdgeLayer
from .kan import BASES, KAN, KANLayer
from .mlp import MLP
from .rbf import RBFKANLayer

__all__ = ["BASES", "KAN", "KANLayer", "ChebyshevKANLayer", "RBFKANLayer", "EdgeLayer", "MLP"]
