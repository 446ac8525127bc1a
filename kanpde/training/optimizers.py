"""The optimisers (torch's Adam and L-BFGS, the dense quasi-Newton family) and one step of any on a loss closure."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from kanpde.training.config import TrainerConfig
from kanpde.training.distributed import Shards
from kanpde.models.protocols import GridModel, n_params
from kanpde.training.quasi_newton import MAX_PARAMS, QuasiNewton

LossFn = Callable[[], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


def make_optimizer(config: TrainerConfig, params: nn.Module, step: int) -> torch.optim.Optimizer:
    """The optimiser for ``params`` at ``step``: Adam, or the second-order one (one iteration per step, strong Wolfe)."""
    method = config.second_order
    if method is None or step < config.adam_end:
        return torch.optim.Adam(params.parameters(), lr=config.lr)
    if method != "lbfgs":
        return QuasiNewton(params.parameters(), method=method)
    return torch.optim.LBFGS(
        # max_eval must be set, or torch leaves the line search no evaluations
        params.parameters(), lr=config.lbfgs_lr, max_iter=1, max_eval=25, history_size=config.history_size,
        tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe",
    )


def check_dense_size(config: TrainerConfig, model: nn.Module) -> None:
    """Fail before training if a dense quasi-Newton method would outgrow :data:`MAX_PARAMS` during the run:
    the count now, or after the grid extensions (a KAN's edges gain one coefficient per grid interval)."""
    method = config.second_order
    if method in (None, "lbfgs"):
        return
    n = n_params(model)
    grids = [g for s, g in zip(config.grid_extension.at, config.grid_extension.grids) if s < config.steps]
    if isinstance(model, GridModel) and grids and max(grids) > model.grid:
        edges = sum(layer.in_features * layer.out_features for layer in model.layers)
        n += edges * (max(grids) - model.grid)
    if config.knots.method == "insert" and config.knots.budget > 0:
        n = max(n, config.knots.budget)
    if n > MAX_PARAMS:
        raise ValueError(f"trainer.optimizer={config.optimizer} keeps a dense n x n inverse Hessian, meant for at most "
                         f"{MAX_PARAMS:,} parameters; this model reaches {n:,}; set trainer.optimizer=lbfgs "
                         f"(or adam_lbfgs), which keeps only {config.history_size} curvature pairs")


def takes_closure(opt: torch.optim.Optimizer) -> bool:
    """Whether ``opt`` is a second-order optimiser: it evaluates the loss itself in a line search, and its
    curvature memory belongs to the objective it saw (new points or a new model make it stale)."""
    return isinstance(opt, (torch.optim.LBFGS, QuasiNewton))


def optimizer_step(opt: torch.optim.Optimizer, loss_fn: LossFn, shards: Shards | None = None) -> tuple[float, dict[str, torch.Tensor]]:
    """One step of ``opt`` on ``loss_fn() -> (loss, terms)``; returns the loss and the terms at the step's start.

    A non-finite loss takes no step (the caller decides what follows).  An L-BFGS line search that
    found no decrease clears the optimiser's memory, so the next step starts from steepest descent.
    With ``shards`` (data-parallel ranks), ``loss_fn`` gives this rank's share: losses, terms and
    gradients are summed over the ranks before the optimiser sees them.
    """
    total = (lambda v: v.detach()) if shards is None else shards.sum
    params = [p for group in opt.param_groups for p in group["params"]]
    terms: dict[str, torch.Tensor] = {}

    def backward(loss: torch.Tensor) -> None:
        loss.backward()
        if shards is not None:
            shards.reduce_gradients_of(params)

    if takes_closure(opt):
        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss, parts = loss_fn()
            if not terms:  # the first evaluation is the loss at the start of this step
                terms.update({t: total(v) for t, v in parts.items()})
            backward(loss)
            return loss if shards is None else total(loss)
        loss_val = float(opt.step(closure).detach())
        if isinstance(opt, torch.optim.LBFGS) and float(opt.state[opt.param_groups[0]["params"][0]].get("t", 1.0)) == 0.0:
            opt.state.clear()
        return loss_val, terms
    opt.zero_grad(set_to_none=True)
    loss, parts = loss_fn()
    terms.update({t: total(v) for t, v in parts.items()})
    loss_val = total(loss).item()
    if math.isfinite(loss_val):
        backward(loss)
        opt.step()
    return loss_val, terms
