"""kanpde: physics-informed Kolmogorov-Arnold Networks for PDEs, measured against physics-informed MLPs.

The public API a problem file uses: domains, conditions, the ``Problem`` base, the ``Fields``
derivative accessor, and the models.
"""
from .conditions import Condition, Dirichlet, Neumann
from .derivatives import Fields
from .geometry import Box, Domain, Interval
from .models import KAN, MLP
from .problem import Problem

__all__ = ["Box", "Condition", "Dirichlet", "Domain", "Fields", "Interval", "KAN", "MLP", "Neumann", "Problem"]
__version__ = "0.1.0"
