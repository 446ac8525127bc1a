"""The physics: the :class:`Problem` base, boundary and initial conditions, hard constraints,
derivatives by name (:class:`Fields`) and the error metrics training and evaluation share."""
from kanpde.pde.conditions import Condition, Dirichlet, Initial, InitialRate, Neumann, Observations, Periodic, Robin
from kanpde.pde.constraints import HardConstraint
from kanpde.pde.derivatives import Fields
from kanpde.pde.problem import Points, Problem

__all__ = ["Condition", "Dirichlet", "Fields", "HardConstraint", "Initial", "InitialRate", "Neumann", "Observations",
           "Periodic", "Points", "Problem", "Robin"]
