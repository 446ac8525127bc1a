"""Models: KAN (B-spline, Chebyshev or RBF edges) and MLP, both mapping x: (batch, n_in) to (batch, n_out)."""
from kanpde.models.chebyshev import ChebyshevKANLayer
from kanpde.models.edge import EdgeLayer
from kanpde.models.kan import BASES, KAN, KANLayer
from kanpde.models.mlp import MLP
from kanpde.models.rbf import RBFKANLayer

__all__ = ["BASES", "KAN", "KANLayer", "ChebyshevKANLayer", "RBFKANLayer", "EdgeLayer", "MLP"]
