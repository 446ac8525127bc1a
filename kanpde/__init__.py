"""kanpde: physics-informed Kolmogorov-Arnold Networks for PDEs, measured against physics-informed MLPs.

The public API: domains, conditions, the ``Problem`` base and the ``Fields`` derivative accessor
(what a problem file uses), the models, the ``Trainer`` with its ``TrainerConfig`` and ``Callback``
base, and ``solve`` (train, evaluate and write a run's files from Python).
"""
from kanpde.experiment.solve import NonFiniteLoss, Run, TrainingFailed, solve
from kanpde.geometry import Ball, Box, Difference, Disk, Domain, Intersection, Interval, Polygon, TimeDomain, Union
from kanpde.models import KAN, MLP
from kanpde.pde import (Condition, Dirichlet, Fields, HardConstraint, Initial, InitialRate, Neumann, Observations, Periodic,
                        Problem, Robin)
from kanpde.training import Callback, Trainer, TrainerConfig, TrainResult

__all__ = ["Ball", "Box", "Callback", "Condition", "Difference", "Dirichlet", "Disk", "Domain", "Fields", "HardConstraint",
           "Initial", "InitialRate", "Intersection", "Interval", "KAN", "MLP", "Neumann", "NonFiniteLoss", "Observations",
           "Periodic", "Polygon", "Problem", "Robin", "Run", "TimeDomain", "TrainResult", "Trainer", "TrainerConfig",
           "TrainingFailed", "Union", "solve"]
__version__ = "0.1.0"
