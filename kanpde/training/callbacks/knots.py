"""Adaptive knots: every ``trainer.knots.every`` steps a B-spline KAN's knots change where an indicator
says the network needs resolution, as an adaptive mesh refines where the error is.

Indicators (per layer, per input, per cell of its knots; :func:`cell_indicator`):
  ``residual``   the squared PDE residual of the points whose input to that layer falls in the cell;
  ``input``      how many points fall in the cell (pykan's input-density grids);
  ``curvature``  the integral over the cell of (sum over the input's edges of |phi''|)^(1/2), which
                 equidistributes the error of a piecewise-linear fit (a curvature density in the
                 spirit of Rigas et al. 2026).
Methods:
  ``insert``   h-refinement: ``insert`` knots per input go to the cells with the largest indicator
               (greedily, each cell's indicator shared among its parts), up to ``budget`` parameters.
               Exact: the network does not change (Boehm's insertion).
  ``move``     r-refinement: as ``insert``, then as many interior knots as were inserted leave where
               the indicator of their two cells is smallest (``removal=indicator``) or, among the older
               knots, where leaving changes the edges least (``removal=jump``: the jump of the k-th
               derivative there, :func:`~kanpde.models.knots.removal_cost`); the parameter count stays
               the same.  The removal is a least-squares refit, so the function changes a little.
  ``density``  the interior knots move to the quantiles of the indicator's density (mixed with a
               uniform one, ``floor``), or ``relax`` of the way there, the count unchanged; a least-squares refit.
  ``descend``  the interior knots move down the loss's gradient, the coefficients held fixed
               (``descent_steps`` backtracking steps per change; no indicator).
With ``follow``, before each change the hidden layers' knots grow to cover the inputs they see, exactly.
Every input of every layer gets the same number of knots, so a layer's G stays one number.
"""
from __future__ import annotations

import copy
import logging
import math

import torch
from torch import nn

from kanpde.models.kan import KAN, KANLayer, kan_of
from kanpde.models.knots import removal_cost, subdivision
from kanpde.pde.constraints import HardConstraint
from kanpde.training.callbacks.base import Callback
from kanpde.training.callbacks.grid_extension import change_layers
from kanpde.training.config import KnotsConfig
from kanpde.training.distributed import Shards
from kanpde.training.state import TrainState

log = logging.getLogger("kanpde")


def check_knot_model(model: nn.Module, setting: str) -> KAN:
    """The B-spline KAN ``model`` is or wraps (hard constraints wrap it), else a ValueError naming ``setting``."""
    try:
        kan = kan_of(model)
    except TypeError:
        kan = None
    if kan is None:
        inner = model.net if isinstance(model, HardConstraint) else model  # name the network, not its wrapper
        raise ValueError(f"{setting} needs a KAN with B-spline edges (knots), got {type(inner).__name__}")
    if kan.basis != "bspline":
        raise ValueError(f"{setting} needs a KAN with B-spline edges (knots), got KAN with basis={kan.basis}")
    return kan


@torch.no_grad()
def cell_indicator(layer: KANLayer, h: torch.Tensor, weight: torch.Tensor | None, kind: str) -> torch.Tensor:
    """(in, cells) the indicator of every cell of ``layer``'s knots.

    h: (batch, in) the inputs the layer sees; weight: (batch,) the squared residual at each point
    (``residual``), ignored by ``input`` (a count) and ``curvature`` (from the layer's own edges).
    """
    knots = layer.knot_vector()
    cells = knots.shape[1] - 1
    if kind == "curvature":
        samples = 8
        frac = (torch.arange(samples, dtype=knots.dtype, device=knots.device) + 0.5) / samples
        width = knots.diff(dim=1)
        z = (knots[:, :-1, None] + width[..., None] * frac).flatten(1).t()  # (cells * samples, in)
        second = layer.edge_derivatives(z.to(layer.coef.dtype), 2)[2].abs().sum(-1)  # (cells * samples, in)
        return second.sqrt().view(cells, samples, -1).mean(1).t().to(knots.dtype) * width
    cell, _ = layer.locate(h)  # outside: cells
    w = torch.ones(h.shape[0], dtype=knots.dtype, device=h.device) if kind == "input" else weight.to(knots.dtype)
    eta = knots.new_zeros(layer.in_features, cells + 1).scatter_add_(1, cell.t(), w.expand(layer.in_features, -1).contiguous())
    return eta[:, :cells]


def placed_by(eta: torch.Tensor, knots: torch.Tensor, count: int, k: int) -> torch.Tensor:
    """(count,) new knots for one input: each goes to the cell of largest eta_c / (parts_c + 1), then each cell
    is split into equal parts.  eta: (cells,), knots: (cells + 1,).  Without any indicator: an even subdivision."""
    if not bool((eta > 0).any()):
        return subdivision(knots.unsqueeze(0), k, count)[0]
    parts = torch.zeros_like(eta)
    for _ in range(count):
        parts[int(torch.argmax(eta / (parts + 1)))] += 1
    new = []
    for c in parts.nonzero().flatten().tolist():
        m = int(parts[c])
        frac = torch.arange(1, m + 1, dtype=knots.dtype, device=knots.device) / (m + 1)
        new.append(knots[c] + (knots[c + 1] - knots[c]) * frac)
    return torch.cat(new)


def removed_by(score: torch.Tensor, knots: torch.Tensor, count: int, k: int) -> torch.Tensor:
    """One input's knots (n,) without the ``count`` interior knots of smallest ``score`` (n,); the interior's
    ends and the paddings stay."""
    n = knots.shape[0]
    inner = torch.arange(k + 1, n - 1 - k, device=knots.device)
    if count > len(inner):
        raise ValueError(f"cannot remove {count} knots from an input with {len(inner)} interior knots")
    drop = inner[torch.argsort(score[inner], stable=True)[:count]]
    keep = torch.ones(n, dtype=torch.bool, device=knots.device)
    keep[drop] = False
    return knots[keep]


def quiet_cells(eta: torch.Tensor) -> torch.Tensor:
    """(n,) each knot's score for ``removal=indicator``: the indicator of its two cells (eta: (n - 1,)); the end
    knots, which have one cell, score infinity."""
    inf = eta.new_full((1,), float("inf"))
    return torch.cat([inf, eta[:-1] + eta[1:], inf])


@torch.no_grad()
def cheap_knots(layer: KANLayer, before: torch.Tensor) -> torch.Tensor:
    """(in, n) each knot's score for ``removal=jump``: :func:`~kanpde.models.knots.removal_cost` of the
    layer's edges; infinity at the knots not in ``before`` (in, n_old), the ones just inserted, which cost
    nothing and would otherwise be the first to leave."""
    _, sp = layer.scales()
    cost = removal_cost(layer.coef * sp.unsqueeze(1), layer.knots, layer.k)
    new = torch.stack([~torch.isin(t, b) for t, b in zip(layer.knots, before)])
    return cost.masked_fill(new, float("inf"))


def density_knots(eta: torch.Tensor, knots: torch.Tensor, k: int, floor: float, relax: float = 1.0) -> torch.Tensor:
    """One input's knots (n,) with the interior knots moved ``relax`` of the way (1: all of it) to the quantiles of
    the density eta_c / width_c over the interior cells (mixed with the uniform density, weight ``floor``); ends
    and paddings stay.  A partial move changes the function less at each change (a moving mesh's relaxation);
    it keeps the knots increasing, being a convex combination of two increasing sequences."""
    n = knots.shape[0]
    t = knots[k : n - k]  # the interior's knots
    width = t.diff()
    mass = eta[k : n - 1 - k].clamp_min(0)
    if not bool(mass.sum() > 0):
        return knots
    mass = (1 - floor) * mass / mass.sum() + floor * width / width.sum()
    cdf = torch.cat([mass.new_zeros(1), mass.cumsum(0)])
    cdf = cdf / cdf[-1]
    G = len(width)
    q = torch.arange(1, G, dtype=knots.dtype, device=knots.device) / G
    c = (torch.searchsorted(cdf, q, right=True) - 1).clamp(0, G - 1)
    inner = t[c] + (q - cdf[c]) / mass[c] * width[c]
    if relax != 1.0:  # (relax = 1 leaves the knots exactly as before the setting existed)
        inner = t[1:-1] + relax * (inner - t[1:-1])
    return torch.cat([knots[: k + 1], inner, knots[n - 1 - k :]])


def plain_loss(state: TrainState, model: nn.Module, derivatives: str, total: bool = True) -> torch.Tensor:
    """The weighted sum of the terms' mean squares on ``model`` (no per-point weights): over every rank's points,
    or (``total=False``, differentiable) this rank's share of it."""
    squares = state.problem.pointwise(model, state.points, derivatives)
    loss = sum(state.problem.weights[t] * state.mean(t, v) for t, v in squares.items())
    return loss if state.shards is None or not total else state.shards.sum(loss)


def knot_gradient(state: TrainState, model: KAN) -> tuple[float, list[torch.Tensor]]:
    """The loss and its gradient with respect to every layer's knots (in, n), the coefficients held fixed.  The
    forward-derivative pass and the kernels treat the knots as constants, so this takes nested autograd through
    the per-cell torch operations (dearer than a step: a study run with `descend` took 1.2-1.3x the uniform run)."""
    fixed = [layer.knots for layer in model.layers]
    leaves = [t.detach().clone().requires_grad_(True) for t in fixed]
    try:
        for layer, t in zip(model.layers, leaves):
            layer.knots = t
        with torch.enable_grad():
            loss = plain_loss(state, state.model, "autograd", total=False)
            grads = torch.autograd.grad(loss, leaves)
    finally:
        for layer, t in zip(model.layers, fixed):
            layer.knots = t
    if state.shards is not None:  # each rank's share, summed: the same loss and step on every rank
        loss, grads = state.shards.sum(loss), tuple(state.shards.sum(g) for g in grads)
    return float(loss.detach()), list(grads)


def descent_direction(knots: torch.Tensor, grad: torch.Tensor, k: int, reach: float = 0.45) -> torch.Tensor:
    """(in, n) a move of the interior knots (not the interior's ends, not the paddings) against ``grad``, each
    input's row scaled so that its largest move is ``reach`` of that knot's smaller neighbouring gap: a step of
    at most this keeps every row strictly increasing.  A positive scaling per row keeps it a descent direction."""
    d = torch.zeros_like(knots)
    d[:, k + 1 : -k - 1] = -grad[:, k + 1 : -k - 1]
    gap = knots.diff(dim=1)
    room = torch.minimum(gap[:, :-1], gap[:, 1:])  # knot j's (1 .. n - 2) smaller gap
    worst = (d[:, 1:-1].abs() / room).amax(1, keepdim=True)
    return torch.where(worst > 0, d * reach / worst.clamp_min(torch.finfo(d.dtype).tiny), torch.zeros_like(d))


def descend_knots(state: TrainState, model: KAN, steps: int) -> tuple[list[torch.Tensor], float, float]:
    """``steps`` steps of gradient descent of the loss in the knot positions, the coefficients held fixed, each
    backtracking (Armijo) from the largest step that keeps the knots in order.  Returns the knots per layer, the
    loss before and after.  When the coefficients are converged, the fixed-coefficient gradient is the gradient
    of the loss minimised over the coefficients (the envelope theorem): the direction variable projection takes."""
    start = [layer.knots for layer in model.layers]
    before = loss = math.nan
    try:
        for _ in range(steps):
            loss, grads = knot_gradient(state, model)
            before = loss if math.isnan(before) else before
            knots = [layer.knots for layer in model.layers]
            dirs = [descent_direction(t, g, model.k) for t, g in zip(knots, grads)]
            slope = float(sum((g * d).sum() for g, d in zip(grads, dirs)))
            if not slope < 0:
                break
            alpha = 1.0
            while alpha >= 2.0**-20:  # near a converged loss, only small moves pay
                for layer, t, d in zip(model.layers, knots, dirs):
                    layer.knots = t + alpha * d
                with torch.enable_grad():  # (some derivative back ends need a graph even to evaluate)
                    new = float(plain_loss(state, state.loss_model, state.derivatives).detach())
                if new <= loss + 1e-4 * alpha * slope:
                    loss = new
                    break
                alpha /= 2
            else:
                for layer, t in zip(model.layers, knots):
                    layer.knots = t
                break
        moved = [layer.knots.detach().clone() for layer in model.layers]
    finally:
        for layer, t in zip(model.layers, start):
            layer.knots = t
    return moved, before, loss


class KnotRefinement(Callback):
    """Changes the knots every ``config.every`` steps (not at step 0) by ``config.method`` (see the module)."""

    columns = ("knot_indicator",)
    changes_objective = False  # a change comes with another optimiser, for which no evaluation is kept

    def __init__(self, config: KnotsConfig, steps: int) -> None:
        self.config, self.steps = config, steps
        self.last = math.nan  # the indicator's total over the first layer at the last change

    def check_model(self, model: nn.Module) -> None:
        kan = check_knot_model(model, f"trainer.knots.method={self.config.method}")
        budget = self.config.budget
        if budget and budget < kan.n_params():
            raise ValueError(f"trainer.knots.budget={budget} is below the model's {kan.n_params()} parameters")

    def on_fit_start(self, state: TrainState) -> None:
        if self.config.method == "descend":  # the knots the gradient moves (the same function, before any optimiser)
            kan_of(state.model).use_free_knots()

    def on_step_start(self, state: TrainState) -> None:
        step = state.step
        until = self.steps if self.config.until is None else min(self.config.until, self.steps)
        if step == 0 or step % self.config.every or step >= until:
            return
        model = kan_of(state.model)
        if self.config.method == "descend":
            return self.descend(state, model)
        x = state.points["pde"]["x"]
        weight = None
        if self.config.indicator == "residual":
            with torch.enable_grad():  # nested autograd needs a graph; the forward back end does not mind
                weight = state.problem.pde_pointwise(state.loss_model, x, state.derivatives).detach()
        if weight is not None and not bool(self._total(state, weight.sum()) > 0):
            return  # a zero indicator changes nothing
        change = self.plan(model, x, weight, state.shards)
        if change is None:
            return
        state.end_stage()
        # Adam's moments (and, if asked, a quasi-Newton H) follow the coefficients through the knot change
        change_layers(state, change, carry=True, keep_curvature=self.config.keep_curvature)
        log.info("step %d: knots %s by the %s indicator: G = %d, %d parameters", step, self.config.method,
                 self.config.indicator, model.grid, model.n_params())

    def descend(self, state: TrainState, model: KAN) -> None:
        """The ``descend`` method: knots moved down the loss's gradient, the coefficients kept (the change's map
        on them is the identity, so Adam's moments and a kept H carry over unchanged)."""
        moved, before, after = descend_knots(state, model, self.config.descent_steps)
        self.last = before - after
        if not after < before:
            return
        state.end_stage()
        change_layers(state, [lambda layer, t=t: layer.set_knots(t, layer.coef.detach().clone()) for t in moved],
                      carry=True, keep_curvature=self.config.keep_curvature)
        log.info("step %d: knots descended, loss %.3g -> %.3g", state.step, before, after)

    @staticmethod
    def _total(state: TrainState, value: torch.Tensor) -> torch.Tensor:
        return value if state.shards is None else state.shards.sum(value)

    def indicators(self, model: KAN, x: torch.Tensor, weight: torch.Tensor | None, shards: Shards | None = None) -> list[torch.Tensor]:
        """Per layer, (in, cells) the indicator on its current knots; in data-parallel training the sum over every
        rank's points (the curvature indicator reads the edges alone, the same on every rank)."""
        eta = [cell_indicator(layer, h, weight, self.config.indicator) for layer, h in zip(model.layers, model.layer_inputs(x))]
        if shards is not None and self.config.indicator != "curvature":
            eta = [shards.sum(e) for e in eta]
        return eta

    @torch.no_grad()
    def plan(self, model: KAN, x: torch.Tensor, weight: torch.Tensor | None, shards: Shards | None = None) -> list | None:
        """Per layer, the change to make (a function of the layer, linear in its coefficients), or None
        when nothing is to change.  Worked out on a copy: the model itself changes only when the change is made.
        ``shards``: the ranks whose points the indicators and the covered ranges sum over (data-parallel training)."""
        cfg, k = self.config, model.k
        probe = copy.deepcopy(model)
        probe.use_free_knots()
        extremes = None if shards is None else shards.extremes
        covered = probe.knot_plan(probe.grid, x if cfg.follow else None, cfg.margin, extremes=extremes)  # the inputs covered, exactly
        probe.refine_knots(covered)
        if cfg.method in ("insert", "move"):
            count = cfg.insert
            if cfg.method == "insert" and cfg.budget:
                per_interval = sum(layer.in_features * layer.out_features for layer in probe.layers)
                count = min(count, (cfg.budget - probe.n_params()) // per_interval)
                if count <= 0:
                    return None
            eta = self.indicators(probe, x, weight, shards)
            self.last = float(eta[0].sum())
            refined = probe.knot_plan(probe.grid + count, place=lambda l, i, row, m: placed_by(eta[l][i], row, m, k))
            if cfg.method == "insert":
                return [lambda layer, t=t: layer.refine_to(t) for t in refined]
            before = [layer.knot_vector().clone() for layer in probe.layers]
            probe.refine_knots(refined)  # exact; then as many knots leave where the indicator (or the cost) is smallest
            if cfg.removal == "jump":
                score = [cheap_knots(layer, old) for layer, old in zip(probe.layers, before)]
            else:
                score = [torch.stack([quiet_cells(row) for row in e]) for e in self.indicators(probe, x, weight, shards)]
            kept = [torch.stack([removed_by(sc[i], layer.knots[i], count, k) for i in range(layer.in_features)])
                    for layer, sc in zip(probe.layers, score)]
            return [lambda layer, t=t, u=u: (layer.refine_to(t), layer.move_knots(u)) for t, u in zip(refined, kept)]
        eta = self.indicators(probe, x, weight, shards)
        self.last = float(eta[0].sum())
        moved = [torch.stack([density_knots(e[i], layer.knots[i], k, cfg.floor, cfg.relax) for i in range(layer.in_features)])
                 for layer, e in zip(probe.layers, eta)]
        return [lambda layer, t=t, u=u: (layer.refine_to(t), layer.move_knots(u)) for t, u in zip(covered, moved)]

    def on_record(self, state: TrainState) -> dict[str, float]:
        return {"knot_indicator": self.last}

    def checkpoint_state(self) -> dict:
        return {"last": self.last}

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.last = saved.get("last", math.nan)
