"""Domains and collocation-point sampling.

``domain`` holds the :class:`Domain` base class, ``box`` axis-aligned boxes and space-time
cylinders, ``shapes`` balls and polygons, ``csg`` set operations, ``sampling`` the samplers.
All methods return float64 CPU tensors; the trainer moves them to its own dtype and device.
"""
from kanpde.geometry.box import Box, Interval, TimeDomain
from kanpde.geometry.csg import Difference, Intersection, Union
from kanpde.geometry.domain import Domain
from kanpde.geometry.sampling import SAMPLERS
from kanpde.geometry.shapes import Ball, Disk, Polygon

__all__ = ["SAMPLERS", "Ball", "Box", "Difference", "Disk", "Domain", "Intersection", "Interval", "Polygon", "TimeDomain", "Union"]
