"""Conditions: boundary (Dirichlet, Neumann, Robin, periodic), initial (value, rate) and point data.

Each condition samples its own points and returns its residual there; the problem adds the mean
square of that residual to the loss under the condition's name.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence, Union

import torch

from kanpde import checks
from kanpde.pde.derivatives import Fields
from kanpde.geometry import Domain, TimeDomain

Value = Union[float, Callable[[torch.Tensor], torch.Tensor]]
"""A condition's right-hand side: a constant, or a function of the points x: (n, dim) -> (n,)."""


class Condition(ABC):
    """A condition imposed on (part of) the boundary.

    Args:
        value: right-hand side g, a constant or a function ``g(x: (n, dim)) -> (n,)``.
        output: the output it constrains.
        where: optional predicate ``where(x: (n, dim)) -> bool (n,)`` selecting part of the
            boundary (e.g. ``lambda x: x[:, 0] == -1``); None means the whole boundary.
        n: number of points; None takes the problem's ``n_boundary``.
        name: the loss term's name (default: the class name in lower case).
    """

    def __init__(
        self,
        value: Value = 0.0,
        output: str = "u",
        where: Callable[[torch.Tensor], torch.Tensor] | None = None,
        n: int | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(value):
            value = float(value)
        self.value = value
        self.output = output
        self.where = where
        self.n = None if n is None else checks.positive_int("n", n)
        self.name = name or type(self).__name__.lower()

    def bind(self, domain: Domain, inputs: Sequence[str]) -> None:
        """Check that this condition makes sense on ``domain`` with these input names (called by
        :class:`Problem`); raises ValueError naming the condition otherwise."""

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """g at the points x: (n, dim) -> (n,)."""
        if callable(self.value):
            g = self.value(x)
            return g.reshape(x.shape[0]) if g.numel() == x.shape[0] else g.expand(x.shape[0])
        return torch.full((x.shape[0],), self.value, dtype=x.dtype, device=x.device)

    def sample(self, domain: Domain, n: int, method: str, seed: int) -> dict[str, torch.Tensor]:
        """Points (and outward normals) on this condition's part of the boundary: ``{"x": (n, dim), "normal": (n, dim)}``."""
        n = self.n or n
        if self.where is None:
            x = domain.sample_boundary(n, method, seed)
        else:
            kept, total, attempt = [], 0, 0
            while total < n:
                if attempt == 20:
                    raise ValueError(f"condition {self.name!r}: its 'where' selects almost none of the boundary")
                cand = domain.sample_boundary(4 * n, method, seed + 7919 * attempt)
                sel = cand[self.where(cand).bool()]
                kept.append(sel)
                total += sel.shape[0]
                attempt += 1
            x = torch.cat(kept)
            # candidates come face by face: keep a random subset, not the first n
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
            x = x[keep.sort().values]
        return {"x": x, "normal": domain.normal(x)}

    @abstractmethod
    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        """Residual at this condition's points, (n,); ``f`` holds the model evaluated at ``points["x"]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output={self.output!r}, name={self.name!r})"


class Dirichlet(Condition):
    """u = g on the boundary."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return f[self.output] - self.target(points["x"])


class Neumann(Condition):
    """du/dn = g on the boundary, n the outward unit normal."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return (f.grad(self.output) * points["normal"]).sum(dim=1) - self.target(points["x"])


class Robin(Condition):
    """a·u + b·du/dn = g on the boundary, n the outward unit normal.

    Args:
        a, b: the constant coefficients (not both zero).
        value, output, where, n, name: as for :class:`Condition`.
    """

    def __init__(self, a: float, b: float, value: Value = 0.0, output: str = "u",
                 where: Callable[[torch.Tensor], torch.Tensor] | None = None, n: int | None = None, name: str | None = None) -> None:
        super().__init__(value, output, where, n, name)
        self.a, self.b = float(a), float(b)
        if self.a == 0 and self.b == 0:
            raise ValueError("Robin: a and b are both zero, so the condition says nothing; give a non-zero a or b")

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        du_dn = (f.grad(self.output) * points["normal"]).sum(dim=1)
        return self.a * f[self.output] + self.b * du_dn - self.target(points["x"])


class Periodic(Condition):
    """The solution and its first derivative across the faces match on opposite faces of a box axis.

    Points are drawn on the face ``axis = lower`` and copied to ``axis = upper``; the residual is
    ``u(lower) - u(upper)`` followed by ``du/d axis (lower) - du/d axis (upper)``
    (``derivative=False`` drops the second part).  Needs a :class:`Box` domain, or a
    :class:`TimeDomain` over a box (the axis must then be a space axis).

    Args:
        axis: the input name of the periodic direction, e.g. ``"x"``.
        output: the output it constrains.
        derivative: also match the first derivative along ``axis``.
        n: number of point pairs; None takes the problem's ``n_boundary``.
        name: loss term name (default ``periodic``).
    """

    def __init__(self, axis: str, output: str = "u", derivative: bool = True, n: int | None = None, name: str | None = None) -> None:
        super().__init__(0.0, output, None, n, name)
        self.axis = str(axis)
        self.derivative = bool(derivative)
        self._index: int | None = None

    def bind(self, domain: Domain, inputs: Sequence[str]) -> None:
        if self.axis not in inputs:
            raise ValueError(f"condition {self.name!r}: periodic axis {self.axis!r} is not an input; inputs are {tuple(inputs)}")
        index = tuple(inputs).index(self.axis)
        if not hasattr(domain, "sample_face"):
            raise ValueError(f"condition {self.name!r}: periodic conditions need a box (or a box x time) domain with opposite faces; "
                             f"{type(domain).__name__} has none")
        if isinstance(domain, TimeDomain) and index == domain.dim - 1:
            raise ValueError(f"condition {self.name!r}: {self.axis!r} is the time axis; a periodic condition needs a space axis")
        self._index = index

    @property
    def axis_index(self) -> int:
        """The periodic axis as an input index (once bound to a problem)."""
        if self._index is None:
            raise RuntimeError(f"condition {self.name!r} is not bound to a domain: build it into a Problem first")
        return self._index

    def sample(self, domain: Domain, n: int, method: str, seed: int) -> dict[str, torch.Tensor]:
        if self._index is None:
            raise RuntimeError(f"condition {self.name!r} is not bound to a domain: build it into a Problem first")
        n = self.n or n
        low = domain.sample_face(self._index, 0, n, method, seed)
        high = low.clone()
        high[:, self._index] = domain.bounds()[1][self._index]
        x = torch.cat([low, high])
        return {"x": x, "normal": domain.normal(x)}

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        n = points["x"].shape[0] // 2
        u = f[self.output]
        parts = [u[:n] - u[n:]]
        if self.derivative:
            du = f.d(self.output, self.axis)
            parts.append(du[:n] - du[n:])
        return torch.cat(parts)


class _AtInitialTime(Condition):
    """A condition on the initial slice t = t0 of a :class:`TimeDomain` (time is the last input)."""

    def __init__(self, value: Value = 0.0, output: str = "u", n: int | None = None, name: str | None = None) -> None:
        super().__init__(value, output, None, n, name)
        self._time: str | None = None

    def bind(self, domain: Domain, inputs: Sequence[str]) -> None:
        if not isinstance(domain, TimeDomain):
            raise ValueError(f"condition {self.name!r} holds at the initial time, but the domain {type(domain).__name__} "
                             f"has no time axis: use a TimeDomain(space, t0, t1)")
        self._time = tuple(inputs)[-1]

    def sample(self, domain: Domain, n: int, method: str, seed: int) -> dict[str, torch.Tensor]:
        x = domain.sample_initial(self.n or n, method, seed)
        return {"x": x}


class Initial(_AtInitialTime):
    """u(x, t0) = g(x): the initial value (default name ``initial``)."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return f[self.output] - self.target(points["x"])


class InitialRate(_AtInitialTime):
    """du/dt(x, t0) = g(x): the initial rate, e.g. a wave's initial velocity (default name ``initialrate``)."""

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return f.d(self.output, self._time) - self.target(points["x"])


class Observations(Condition):
    """Point data: u(x_j) = values_j at given points, for inverse problems and data assimilation.

    Args:
        x: (n, dim) observation points.
        values: (n,) observed values of ``output``.
        output: the output observed.
        name: loss term name (default ``observations``).
    """

    def __init__(self, x: torch.Tensor, values: torch.Tensor, output: str = "u", name: str | None = None) -> None:
        x = torch.as_tensor(x, dtype=torch.float64)
        values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != values.shape[0] or x.shape[0] == 0:
            raise ValueError(f"Observations: x must be (n, dim) and values (n,) with n > 0; got {tuple(x.shape)} and {tuple(values.shape)}")
        if not (torch.isfinite(x).all() and torch.isfinite(values).all()):
            raise ValueError("Observations: x and values must be finite (found NaN or inf)")
        super().__init__(0.0, output, None, x.shape[0], name)
        self.x, self.values = x, values

    def bind(self, domain: Domain, inputs: Sequence[str]) -> None:
        if self.x.shape[1] != domain.dim:
            raise ValueError(f"condition {self.name!r}: observation points have {self.x.shape[1]} coordinates, the domain {domain.dim}")
        outside = ~domain.inside(self.x)
        if outside.any():
            k = int(torch.nonzero(outside)[0, 0])
            raise ValueError(f"condition {self.name!r}: observation point {k} = {self.x[k].tolist()} lies outside the domain")

    def sample(self, domain: Domain, n: int, method: str, seed: int) -> dict[str, torch.Tensor]:
        return {"x": self.x.clone(), "values": self.values.clone()}

    def residual(self, f: Fields, points: dict[str, torch.Tensor]) -> torch.Tensor:
        return f[self.output] - points["values"]
