"""kanpde: physics-informed Kolmogorov-Arnold Networks for PDEs, measured against physics-informed MLPs.

The public API a problem file uses: domains, conditions, the ``Problem`` base, the ``Fields``
derivative accessor, and the models.
"""
from kanpde.pde.conditions import Condition, Dirichlet, Initial, InitialRate, Neumann, Observations, Periodic, Robin
from kanpde.pde.constraints import HardConstraint
from kanpde.pde.derivatives import Fields
from kanpde.geometry import Ball, Box, Difference, Disk, Domain, Intersection, Interval, Polygon, TimeDomain, Union
from kanpde.models import KAN, MLP
from kanpde.pde.problem import Problem

__all__ = ["Ball", "Box", "Condition", "Difference", "Dirichlet", "Disk", "Domain", "Fields", "HardConstraint", "Initial",
           "InitialRate", "Intersection", "Interval", "KAN", "MLP", "Neumann", "Observations", "Periodic", "Polygon", "Problem",
           "Robin", "TimeDomain", "Union"]
__version__ = "0.1.0"
