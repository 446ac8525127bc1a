"""The ``Problem`` base class: a PDE with its domain, conditions, residual and (optional) exact solution."""
from __future__ import annotations

from abc import ABC, abstractmethod
import hashlib
import logging
import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from kanpde import checks
from kanpde.pde.conditions import Condition, Dirichlet, Initial, Periodic
from kanpde.pde.constraints import HardConstraint
from kanpde.pde.derivatives import Fields, Plan
from kanpde.geometry import SAMPLERS, Domain

log = logging.getLogger("kanpde")

Points = dict[str, dict[str, torch.Tensor]]
"""Collocation points by loss term: ``{"pde": {"x": ...}, "<condition name>": {"x": ..., "normal": ...}}``."""

DEFAULT_EVAL_POINTS = {1: 1000, 2: 100, 3: 30}


def points_digest(points: Points) -> str:
    """A short hash of the collocation points, so a comparison can check that runs trained on the same points."""
    h = hashlib.sha256()
    for term in sorted(points):
        for key in sorted(points[term]):
            h.update(f"{term}/{key}".encode())
            h.update(points[term][key].detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Problem(ABC):
    """A PDE problem.  Subclasses set ``name``, ``inputs`` and ``outputs`` and define ``residual``.

    Args:
        domain: where the PDE holds.
        conditions: boundary conditions; their names must be unique.
        weights: loss weight per term (``"pde"`` and each condition's name); missing terms weigh 1.
        n_interior: collocation points for the PDE residual.
        n_boundary: points for each condition that does not set its own ``n``.
        sampler: how points are drawn: ``uniform``, ``sobol``, ``halton`` or ``lhs``.
        eval_points_per_dim: evaluation grid resolution per dimension (default 1000, 100, 30 for 1-3 D).
        hard_constraints: impose the Dirichlet conditions on the whole boundary and the initial
            values exactly, as u = lift + distance·network (:meth:`constrain`); their loss terms drop out.
        exact_periodic: the :class:`Periodic` conditions hold exactly through the model's periodic input
            embedding (:mod:`kanpde.models.embedding`; the model must embed every axis in
            :meth:`periodic_axes`); their loss terms drop out.
        unknowns: unknown scalar coefficients to learn with the network (inverse problems),
            ``{name: initial value}``; the residual reads them with :meth:`unknown`.

    Class attributes a subclass may set besides ``name``, ``inputs`` and ``outputs``:
    ``published``, the literature's figures for this problem (shown by ``python -m kanpde.experiment.catalogue``),
    each a dict with ``method``, ``metric``, ``value`` and optionally ``params`` and ``source``;
    ``true_unknowns``, for an inverse problem with a known answer, the unknowns' true values.
    """

    name: str = "problem"
    inputs: tuple[str, ...] = ("x",)
    outputs: tuple[str, ...] = ("u",)
    published: tuple[Mapping[str, Any], ...] = ()
    true_unknowns: Mapping[str, float] = {}  # inverse problems: the values the unknowns should reach

    def __init__(
        self,
        domain: Domain,
        conditions: Sequence[Condition] = (),
        weights: Mapping[str, float] | None = None,
        n_interior: int = 1000,
        n_boundary: int = 100,
        sampler: str = "uniform",
        eval_points_per_dim: int | None = None,
        hard_constraints: bool = False,
        unknowns: Mapping[str, float] | None = None,
        exact_periodic: bool = False,
    ) -> None:
        if domain.dim != len(self.inputs):
            raise ValueError(f"{self.name}: domain has dimension {domain.dim} but inputs are {self.inputs}")
        clash = set(self.inputs) & set(self.outputs)
        if clash:
            raise ValueError(f"{self.name}: names used as both input and output: {sorted(clash)}")
        self.domain = domain
        self.conditions = list(conditions)
        names = ["pde"] + [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: loss term names must be unique, got {names}")
        for c in self.conditions:
            if c.output not in self.outputs:
                raise ValueError(f"{self.name}: condition {c.name!r} constrains unknown output {c.output!r}; outputs are {self.outputs}")
            try:
                c.bind(domain, self.inputs)
            except ValueError as e:
                raise ValueError(f"{self.name}: {e}") from None
        weights = dict(weights or {})
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"weights: unknown loss term(s) {sorted(unknown)}; the terms of {self.name} are {names}")
        self.weights = {n: checks.positive_float(f"weights.{n}", weights.get(n, 1.0), allow_zero=True) for n in names}
        self.n_interior = checks.positive_int("n_interior", n_interior)
        self.n_boundary = checks.positive_int("n_boundary", n_boundary)
        self.sampler = checks.one_of("sampler", sampler, SAMPLERS)
        if eval_points_per_dim is None:
            eval_points_per_dim = DEFAULT_EVAL_POINTS.get(domain.dim, 10)
        self.eval_points_per_dim = checks.positive_int("eval_points_per_dim", eval_points_per_dim, minimum=2)
        self._plans: dict[str, Plan | None] = {}  # loss term -> second partials its residual asked for
        self.unknowns = nn.ParameterDict()
        for key, value in dict(unknowns or {}).items():
            if not str(key).isidentifier() or key in self.inputs or key in self.outputs:
                raise ValueError(f"unknowns: {key!r} must be an identifier that is not an input or output name")
            v = float(value)
            if not math.isfinite(v):
                raise ValueError(f"unknowns.{key} must be a finite initial value, got {value!r}")
            self.unknowns[key] = nn.Parameter(torch.tensor(v, dtype=torch.float64))
        if not isinstance(hard_constraints, bool):
            raise ValueError(f"hard_constraints must be true or false, got {hard_constraints!r}")
        self.hard_terms: tuple[str, ...] = self._hard_terms() if hard_constraints else ()
        if hard_constraints and not self.hard_terms:
            raise ValueError(f"hard_constraints: {self.name} has no constant Dirichlet condition on the whole boundary and no "
                             f"initial value to impose exactly (a Dirichlet value that varies needs the problem to define lift()); "
                             f"set hard_constraints=false")
        if not isinstance(exact_periodic, bool):
            raise ValueError(f"exact_periodic must be true or false, got {exact_periodic!r}")
        self.embedded_terms: tuple[str, ...] = tuple(c.name for c in self.conditions if isinstance(c, Periodic)) if exact_periodic else ()
        if exact_periodic and not self.embedded_terms:
            raise ValueError(f"exact_periodic: {self.name} has no Periodic condition to impose exactly; set exact_periodic=false")

    def _hard_terms(self) -> tuple[str, ...]:
        """Conditions that :meth:`constrain` can impose exactly: initial values, and Dirichlet on the whole
        boundary of a domain with a distance function when the value is a constant or the problem defines
        its own :meth:`lift`.  (The default lift evaluates g inside the domain: for a g that is the exact
        solution, as benchmarks often give it, the "constrained" model would be the answer itself.)"""
        own_lift = type(self).lift is not Problem.lift
        hard = []
        for c in self.conditions:
            if isinstance(c, Dirichlet) and c.where is None and (own_lift or not callable(c.value)):
                try:
                    self.domain.distance(self.domain.sample_boundary(1, "uniform", 0))
                except NotImplementedError:
                    continue
                hard.append(c.name)
            elif isinstance(c, Initial):
                hard.append(c.name)
        return tuple(hard)

    @property
    def exact_terms(self) -> tuple[str, ...]:
        """Conditions met exactly (hard constraints and embedded periodicity): no loss term, no points."""
        return self.hard_terms + self.embedded_terms

    def periodic_axes(self) -> dict[int, float]:
        """``{input index: period}`` of the axes whose periodicity the model must embed (``exact_periodic``)."""
        lower, upper = self.domain.bounds()
        axes = {c.axis_index: float(upper[c.axis_index] - lower[c.axis_index])
                for c in self.conditions if c.name in self.embedded_terms and isinstance(c, Periodic)}
        return dict(sorted(axes.items()))

    def unknown(self, name: str) -> torch.Tensor:
        """The current value of an unknown coefficient (a 0-d tensor that trains with the network)."""
        try:
            return self.unknowns[name]
        except (KeyError, AttributeError):  # ParameterDict raises AttributeError for a missing key
            raise KeyError(f"{self.name} has no unknown {name!r}; its unknowns are {list(self.unknowns)}") from None

    @property
    def terms(self) -> list[str]:
        """Names of the loss terms: ``"pde"`` then each condition's not imposed exactly."""
        return ["pde"] + [c.name for c in self.conditions if c.name not in self.exact_terms]

    @property
    def paired_terms(self) -> set[str]:
        """The terms whose points come as pairs, the first half matched with the second (periodic conditions)."""
        return {c.name for c in self.conditions if isinstance(c, Periodic)}

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Hard constraints: x: (n, dim) -> (n, n_out), zero where a value is imposed exactly.

        The product of the domain's distance function (Dirichlet on the whole boundary) and the
        normalised time since t0 (initial value), per output; 1 for outputs with neither.
        """
        cols = []
        for name in self.outputs:
            col = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            for c in self.conditions:
                if c.name in self.hard_terms and c.output == name:
                    col = col * (self.domain.time_distance(x) if isinstance(c, Initial) else self.domain.distance(x))
            cols.append(col)
        return torch.stack(cols, dim=1)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """Hard constraints: x: (n, dim) -> (n, n_out), the imposed values where :meth:`distance` vanishes.

        An initial value g is taken at t0 for every t (g(x, t0): the initial slice's values carried
        along in time); a constant Dirichlet value is that constant.  With both on one output the
        initial value is used, which must then agree with the boundary value on the boundary (checked
        when the constraint is built).  Override this method to impose a Dirichlet value that varies
        along the boundary, with an extension of it into the domain built from the boundary data only.
        """
        cols = []
        for o, name in enumerate(self.outputs):
            conds = [c for c in self.conditions if c.name in self.hard_terms and c.output == name]
            pick = next((c for c in conds if isinstance(c, Initial)), conds[0] if conds else None)
            if isinstance(pick, Initial):
                cols.append(pick.target(self.domain.at_time(x, self.domain.t0)))
            else:
                cols.append(pick.target(x) if pick is not None else x.new_zeros(x.shape[0]))
        return torch.stack(cols, dim=1)

    def _check_lift(self) -> None:
        """The lift must meet every hard Dirichlet value on the lateral boundary (tolerance 1e-8)."""
        for c in self.conditions:
            if c.name in self.hard_terms and isinstance(c, Dirichlet):
                xb = self.domain.sample_boundary(256, "uniform", 12345)
                gap = (self.lift(xb)[:, self.outputs.index(c.output)] - c.target(xb)).abs().max()
                if float(gap) > 1e-8:
                    raise ValueError(f"hard_constraints: on {self.name} the lift (the initial value) differs from the boundary "
                                     f"value of {c.name!r} by up to {float(gap):.3g} on the boundary; override Problem.lift, "
                                     f"or set hard_constraints=false")

    def periodic_lift_jumps(self) -> dict[str, tuple[float, float]]:
        """``{axis: (value jump, slope jump)}``: how far the hard-constraint lift is from periodic on each periodic
        axis (the largest |g(lower) − g(upper)| and |∂g(lower) − ∂g(upper)| along it, over 64 points of the
        other inputs).  u = lift + distance·network keeps any such jump at every t, since the network term
        is smooth there; a diffusing PDE's solution loses it at once (``allen_cahn1d``'s x²cos πx has
        slopes −2 and 2 at x = ∓1)."""
        if not self.hard_terms:
            return {}
        lower, upper = self.domain.bounds()
        out = {}
        for c in self.conditions:
            if not isinstance(c, Periodic):
                continue
            axis = c.axis_index
            x = self.domain.sample_interior(64, "uniform", 12345).to(torch.float64)
            ends = []
            for edge in (lower[axis], upper[axis]):
                xe = x.clone()
                xe[:, axis] = float(edge)
                xe.requires_grad_(True)
                g = self.lift(xe)
                slope = torch.autograd.grad(g.sum(), xe)[0][:, axis]
                ends.append((g.detach(), slope))
            (g0, s0), (g1, s1) = ends
            out[c.axis] = (float((g0 - g1).abs().max()), float((s0 - s1).abs().max()))
        return out

    def _warn_periodic_lift(self) -> None:
        """Warn when the lift breaks a periodic axis (:meth:`periodic_lift_jumps`): that bounds the error there."""
        for axis, (value, slope) in self.periodic_lift_jumps().items():
            if value > 1e-8 or slope > 1e-6:
                log.warning(f"hard_constraints: on {self.name} the imposed initial value is not smooth across the periodic axis "
                            f"{axis!r} (its values differ by {value:.3g} and its slopes by {slope:.3g} at the two ends); u = lift + "
                            f"t·network keeps that kink at every t, which bounds the error near the ends; problem.hard_constraints=false "
                            f"imposes the initial value as a loss term instead")

    def check_periodic_embedding(self, model: nn.Module) -> None:
        """The model's periodic input embedding must be exactly this problem's periodic axes (with
        ``exact_periodic``), with the domain's period; a ValueError naming the setting otherwise."""
        embedding = getattr(model, "embedding", None)
        embedded = dict(getattr(embedding, "periodic", {}) or {})
        wanted = self.periodic_axes()
        for axis in embedded:
            if axis not in wanted:
                why = "has no Periodic condition on it" if not any(isinstance(c, Periodic) and c.axis_index == axis
                                                                    for c in self.conditions) else "has exact_periodic=false"
                raise ValueError(f"model.embedding.periodic: input {self.inputs[axis]!r} is not periodic in problem {self.name!r} "
                                 f"(it {why}); drop the embedding, or declare the axis periodic and set problem.exact_periodic=true")
        for axis, period in wanted.items():
            if axis not in embedded:
                raise ValueError(f"problem.exact_periodic: the model does not embed input {self.inputs[axis]!r} periodically; build it "
                                 f"with embedding={{'periodic': {{{axis}: 1}}}} (the CLI adds this itself) or set exact_periodic=false")
            lower, upper = model.normalize.bounds()
            length = upper[axis] - lower[axis]
            if abs(length - period) > 10 * torch.finfo(model.normalize.scale.dtype).eps * abs(period):
                raise ValueError(f"model.bounds: the model's range of {self.inputs[axis]!r} is [{lower[axis]:g}, {upper[axis]:g}], so its "
                                 f"embedding's period is {length:g}, but the domain's period is {period:g}")

    def constrain(self, model: nn.Module) -> nn.Module:
        """The model with the hard constraints applied (the model itself when there are none)."""
        if not self.hard_terms:
            return model
        self._check_lift()
        self._warn_periodic_lift()
        return HardConstraint(model, self.distance, self.lift)

    @abstractmethod
    def residual(self, f: Fields) -> torch.Tensor | Sequence[torch.Tensor]:
        """PDE residual at the interior points held by ``f``: (batch,) or one such tensor per equation."""

    def exact(self, x: torch.Tensor) -> torch.Tensor | None:
        """Exact solution at x: (n, dim) -> (n, n_out), or None when there is none.

        Written with torch operations so that its gradient (for the H1 error) comes from autograd.
        """
        return None

    def reference(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Reference data for problems without a closed-form solution: (x (m, dim), u (m, n_out))
        float64, e.g. from a numerical solver; None when there is none (the default)."""
        return None

    def evaluation_set(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Where errors are measured and what against: the evaluation grid with the exact solution,
        else the reference data, else the grid with None."""
        x = self.eval_points()
        with torch.no_grad():
            u = self.exact(x)
        if u is not None:
            return x, u
        ref = self.reference()
        return ref if ref is not None else (x, None)

    def sample_points(self, seed: int = 0) -> Points:
        """Draw the collocation points for every loss term (float64, CPU)."""
        points: Points = {"pde": {"x": self.domain.sample_interior(self.n_interior, self.sampler, seed)}}
        for i, c in enumerate(self.conditions):
            if c.name in self.exact_terms:
                continue
            points[c.name] = c.sample(self.domain, self.n_boundary, self.sampler, seed + 1000 * (i + 1))
        return points

    def eval_points(self) -> torch.Tensor:
        """The evaluation grid, (m, dim) float64 (grid points inside the domain)."""
        return self.domain.grid(self.eval_points_per_dim)

    def _check_residual(self, r: torch.Tensor, n: int, what: str) -> torch.Tensor:
        if r.shape not in ((n,), (n, 1)):
            raise ValueError(f"{self.name}: the {what} residual must have shape ({n},) for {n} points, got {tuple(r.shape)}")
        return r

    def pointwise(self, model: nn.Module, points: Points, derivatives: str = "auto") -> dict[str, torch.Tensor]:
        """Squared residual of every loss term at each of its points: ``{term: (n_term,)}`` (a system's
        equations summed per point), what per-point weights and time slabs act on.

        ``derivatives`` picks the back end of :class:`Fields` (``auto``, ``forward``, ``autograd``).
        Each term remembers which derivatives its residual asked for, so that from the second
        call on the forward back end computes them all in one pass.
        """
        plans = self._plans

        def fields(term: str, x: torch.Tensor) -> Fields:
            return Fields(model, x, self.inputs, self.outputs, derivatives, plans.get(term))

        out = {"pde": self.pde_pointwise(model, points["pde"]["x"], derivatives)}
        for c in self.conditions:
            if c.name in self.exact_terms:
                continue
            p = points[c.name]
            fc = fields(c.name, p["x"])
            out[c.name] = c.residual(fc, p).reshape(-1).square()
            plans[c.name] = fc.plan
        return out

    def pde_pointwise(self, model: nn.Module, x: torch.Tensor, derivatives: str = "auto") -> torch.Tensor:
        """Squared PDE residual at the points x: (n, dim) -> (n,) (a system's equations summed)."""
        f = Fields(model, x, self.inputs, self.outputs, derivatives, self._plans.get("pde"))
        r = self.residual(f)
        rs = [r] if isinstance(r, torch.Tensor) else list(r)
        n = x.shape[0]
        out = sum(self._check_residual(ri, n, "PDE").reshape(n).square() for ri in rs)
        self._plans["pde"] = f.plan
        return out

    def losses(self, model: nn.Module, points: Points, derivatives: str = "auto") -> dict[str, torch.Tensor]:
        """Unweighted mean squared residual of every loss term (the means of :meth:`pointwise`)."""
        return {t: v.mean() for t, v in self.pointwise(model, points, derivatives).items()}
