"""KAN grid extension (Liu et al. 2024, §2.5): at scheduled steps the B-spline grids refine and
training goes on with a fresh optimiser, or with Adam's moments carried across (mapped like the
coefficients)."""
from __future__ import annotations

import logging
from numbers import Integral
from typing import Callable

import torch
from torch import nn

from kanpde.models.protocols import GridModel
from kanpde.training.callbacks.base import Callback
from kanpde.training.config import TrainerConfig
from kanpde.training.quasi_newton import QuasiNewton
from kanpde.training.state import TrainState

log = logging.getLogger("kanpde")


def apply_along(P: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Map axis ``dim`` of x by the batched matrix P: out[b..., :, rest...] = P[b...] @ x[b..., :, rest...].

    P: (batch..., K', K), whose batch dimensions broadcast against x.shape[:dim]; x: (batch..., K, rest...)
    -> (batch..., K', rest...). P is cast to x's dtype and device.
    """
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        raise ValueError(f"x must be a tensor with at least one dimension, got {type(x).__name__}")
    if not isinstance(dim, Integral) or isinstance(dim, bool) or not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be an integer in [{-x.ndim}, {x.ndim - 1}] for x of shape {tuple(x.shape)}, "
                         f"got {dim!r}")
    dim = int(dim) % x.ndim
    if not isinstance(P, torch.Tensor) or P.ndim < 2 or P.shape[-1] != x.shape[dim]:
        shape = tuple(P.shape) if isinstance(P, torch.Tensor) else type(P).__name__
        raise ValueError(f"P must have shape (batch..., K', {x.shape[dim]}), got {shape}")
    batch = tuple(x.shape[:dim])
    try:
        ok = torch.broadcast_shapes(tuple(P.shape[:-2]), batch) == batch
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"P's batch dimensions {tuple(P.shape[:-2])} must broadcast to x.shape[:dim] = {batch}")
    rest = tuple(x.shape[dim + 1:])
    cols = x.reshape(*batch, x.shape[dim], -1)
    out = P.to(dtype=x.dtype, device=x.device) @ cols
    return out.reshape(*batch, P.shape[-2], *rest)


FIRST_MOMENTS = ("exp_avg",)
SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")


@torch.no_grad()
def project_adam_state(state: dict, P: torch.Tensor, dim: int = 1) -> dict:
    """Carry one parameter's ``torch.optim.Adam`` state across the linear map new = P @ old along ``dim``.

    state: {"step", "exp_avg", "exp_avg_sq", optionally "max_exp_avg_sq"} for a tensor whose axis ``dim``
    goes from K to K'; P: (batch..., K', K) as in ``apply_along`` (for KAN coefficients (in, K, out),
    P is (in, K', K) and dim = 1). exp_avg maps exactly like the parameter. The second moments map with
    P**2 (elementwise): if the old gradient entries were independent with second moments v, the
    combination Σ_k P_jk g_k has second moment Σ_k P_jk² v_k. Unlike P @ v this stays non-negative, which
    Adam's sqrt needs. ``step`` and any other entries are copied unchanged; an empty state stays empty.
    """
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict (one parameter's Adam state), got {type(state).__name__}")
    if not state:
        return {}
    for key in ("exp_avg", "exp_avg_sq"):
        if not isinstance(state.get(key), torch.Tensor):
            raise ValueError(f"state must hold a tensor {key!r}, got keys {sorted(state)}")
    shape = state["exp_avg"].shape
    for key in SECOND_MOMENTS:
        if key in state and state[key].shape != shape:
            raise ValueError(f"state[{key!r}] must have the shape of exp_avg {tuple(shape)}, "
                             f"got {tuple(state[key].shape)}")
    if not isinstance(P, torch.Tensor):
        raise ValueError(f"P must be a tensor of shape (batch..., K', K), got {type(P).__name__}")
    P = P.detach()
    new: dict = {}
    for key, value in state.items():
        if key in FIRST_MOMENTS:
            new[key] = apply_along(P, value, dim)
        elif key in SECOND_MOMENTS:
            new[key] = apply_along(P * P, value, dim)
        else:
            new[key] = value.clone() if isinstance(value, torch.Tensor) else value
    return new


def layer_maps(model: GridModel, changes: list[Callable]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per KAN layer, its coefficients and the linear map (in, K', K) its change applies to them (taken before changing)."""
    return [(layer.coef, layer.change_map(change)) for layer, change in zip(model.layers, changes)]


def adam_moments(opt: torch.optim.Optimizer, model: GridModel, changes: list[Callable]) -> tuple[dict, list]:
    """Every parameter's Adam state and the linear map of each KAN layer's change (taken before changing)."""
    return dict(opt.state), layer_maps(model, changes)


def restore_moments(opt: torch.optim.Optimizer, model: GridModel, states: dict, maps: list) -> None:
    """Give a new Adam the old moments: unchanged parameters their own, new coefficients the mapped ones."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p in states:
                opt.state[p] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in states[p].items()}
    for layer, (old_coef, P) in zip(model.layers, maps):
        if old_coef in states:
            opt.state[layer.coef] = project_adam_state(states[old_coef], P, dim=1)


def change_layers(state: TrainState, changes: list[Callable], carry: bool, keep_curvature: bool = False) -> None:
    """Apply ``changes[l]`` to layer l of the KAN (each linear in the layer's coefficients) and give training a
    fresh optimiser; with ``carry`` and Adam, Adam's moments mapped like the coefficients; with
    ``keep_curvature`` and a dense quasi-Newton optimiser, its inverse Hessian mapped likewise
    (:meth:`QuasiNewton.carry_curvature`)."""
    model, old = state.model, state.optimizer
    carry = carry and isinstance(old, torch.optim.Adam)
    keep_curvature = keep_curvature and isinstance(old, QuasiNewton)
    maps = layer_maps(model, changes) if carry or keep_curvature else []
    carried = dict(old.state) if carry else None
    with torch.no_grad():
        for layer, change in zip(model.layers, changes):
            change(layer)
    state.model_changed()
    if carried is not None and isinstance(state.optimizer, torch.optim.Adam):
        restore_moments(state.optimizer, model, carried, maps)
    if keep_curvature and isinstance(state.optimizer, QuasiNewton):
        by_param = {id(coef): P for coef, P in maps}
        state.optimizer.carry_curvature(old, [by_param.get(id(p)) for p in old.param_groups[0]["params"]])


def extensions(config: TrainerConfig, model: nn.Module) -> dict[int, int]:
    """The extensions ``config`` makes on ``model``: ``{step: new grid}`` for grids above the model's,
    at steps before the end of training."""
    if not isinstance(model, GridModel):
        return {}
    ext = config.grid_extension
    return {s: g for s, g in zip(ext.at, ext.grids) if g > model.grid and s < config.steps}


def schedule_notes(config: TrainerConfig, model: nn.Module) -> list[str]:
    """What a user should know about the schedule on ``model``: extensions past the end of training
    (skipped), scheduled grids it already has, and extensions that do not keep the function exactly
    (B-splines: only a multiple of the grid does; Chebyshev edges: every one does; RBF edges: none)."""
    if not isinstance(model, GridModel):
        return []
    ext = config.grid_extension
    notes = []
    late = [(s, g) for s, g in zip(ext.at, ext.grids) if s >= config.steps and g > model.grid]
    if late:
        notes.append(f"trainer.steps={config.steps} ends before the grid extension(s) "
                     + ", ".join(f"G={g} at step {s}" for s, g in late) + ", which are skipped")
    schedule = extensions(config, model)
    if not schedule and (config.grid_update != "none" or ext.method != "refit"):
        setting = f"trainer.grid_update={config.grid_update}" if config.grid_update != "none" else f"trainer.grid_extension.method={ext.method}"
        notes.append(f"{setting} acts at grid extensions, and none is scheduled (trainer.grid_extension.at / grids): it changes nothing")
    kept = [g for s, g in zip(ext.at, ext.grids) if g <= model.grid]
    if kept:
        notes.append(f"model.grid={model.grid} is already as fine as scheduled grid(s) {kept}; extensions: "
                     + (", ".join(f"G={g} at step {s}" for s, g in schedule.items()) or "none"))
    previous = model.grid
    for step, g in schedule.items():
        if model.extension_is_exact(previous, g):
            pass
        elif model.basis == "bspline":
            notes.append(f"the grid extension {previous} -> {g} at step {step} is not a refinement ({g} is not a "
                         f"multiple of {previous}): the refit only approximates the splines, and the PDE residual "
                         f"can jump (on poisson2d, 5 -> 8 raised it 67x); multiples of the grid keep the function exactly")
        else:  # rbf: no extension keeps Gaussians of one width exactly with those of another
            notes.append(f"the grid extension {previous} -> {g} at step {step} refits the {model.basis} edges by least squares: "
                         f"it only approximates the function (rbf: by up to several % of its size near the ends of a "
                         f"range), and the PDE residual can jump")
        previous = g
    return notes


class GridExtension(Callback):
    """Extends the KAN's grid at the scheduled steps (``trainer.grid_extension``), closing a stage before each."""

    changes_objective = False

    def __init__(self, config: TrainerConfig) -> None:
        self.config = config
        self.schedule: dict[int, int] = {}

    def check_model(self, model: nn.Module) -> None:
        if not isinstance(model, GridModel):
            raise ValueError(f"trainer.grid_extension needs a KAN model, got {type(model).__name__}; "
                             f"set trainer.grid_extension.at=[] trainer.grid_extension.grids=[]")
        if self.knotted and getattr(model, "basis", None) != "bspline":
            setting = ("trainer.grid_update=follow" if self.config.grid_update == "follow"
                       else "trainer.grid_extension.method=insert")
            raise ValueError(f"{setting} needs B-spline edges (knots), got basis={getattr(model, 'basis', None)}")

    @property
    def knotted(self) -> bool:
        """Whether extensions insert knots (free knots) rather than refit uniform grids."""
        return self.config.grid_extension.method == "insert" or self.config.grid_update == "follow"

    def changes(self, state: TrainState, grid: int) -> list[Callable]:
        """Per layer, the extension to ``grid`` as a function of the layer."""
        model = state.model
        if not self.knotted:
            return [lambda layer: layer.extend(grid)] * len(model.layers)
        x = state.points["pde"]["x"] if self.config.grid_update == "follow" else None
        plan = model.knot_plan(grid, x, self.config.knots.margin, extremes=extremes_of(state))
        return [lambda layer, t=t: layer.refine_to(t) for t in plan]

    def on_fit_start(self, state: TrainState) -> None:
        self.schedule = extensions(self.config, state.model)

    def on_step_start(self, state: TrainState) -> None:
        grid = self.schedule.get(state.step)
        if grid is None:
            return
        model: GridModel = state.model
        if grid <= model.grid:  # adaptive knots grew the grid past this extension since the schedule was made
            log.info(f"step {state.step}: the grid extension to G={grid} is skipped: the model has G={model.grid} already")
            return
        state.end_stage()
        if self.config.grid_update == "extension":
            model.update_grid(state.points["pde"]["x"], extremes=extremes_of(state))
        change_layers(state, self.changes(state, grid), carry=self.config.extension_state == "carry",
                      keep_curvature=self.config.grid_extension.keep_curvature)


def extremes_of(state: TrainState):
    """How a grid update combines this process's input ranges with the other ranks' (None: one process)."""
    return None if state.shards is None else state.shards.extremes
