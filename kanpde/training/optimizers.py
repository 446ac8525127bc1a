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


class LastEvaluation:
    """The loss closure's most recent evaluation: the parameters it saw, its loss, gradients and terms.

    A second-order step begins by evaluating the loss where the previous step's line search ended, a
    point that search has just evaluated.  When the objective has not changed in between (no callback
    reweighted, resampled or reshaped anything), :func:`optimizer_step` takes that evaluation from here
    instead of computing it again: one closure call fewer per step, about half of a quasi-Newton step's
    cost.  It is only used for the optimiser that made it and only where every parameter is
    bit-for-bit the same, so the values are exactly those a new evaluation would give.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.optimizer: torch.optim.Optimizer | None = None
        self.x: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        self.loss: torch.Tensor | None = None
        self.terms: dict[str, torch.Tensor] = {}
        self.extra: object = None

    def store(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], loss: torch.Tensor,
              terms: dict[str, torch.Tensor], extra: object = None) -> None:
        """Keep this evaluation (its gradients are in ``params``' ``.grad``); ``extra``: what the caller needs back."""
        self.optimizer, self.loss, self.terms, self.extra = opt, loss.detach(), terms, extra
        self.x = [p.detach().clone() for p in params]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in params]

    def recall(self, opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> bool:
        """Put the kept gradients into ``params`` if the evaluation was made by ``opt`` at exactly these values."""
        if (self.loss is None or opt is not self.optimizer or len(params) != len(self.x)
                or not all(p.shape == x.shape and torch.equal(p.detach(), x) for p, x in zip(params, self.x))):
            return False
        for p, g in zip(params, self.grads):
            p.grad = None if g is None else g.clone()
        return True


def optimizer_step(opt: torch.optim.Optimizer, loss_fn: LossFn, shards: Shards | None = None,
                   memo: LastEvaluation | None = None, extra: Callable[[], object] | None = None) -> tuple[float, dict[str, torch.Tensor]]:
    """One step of ``opt`` on ``loss_fn() -> (loss, terms)``; returns the loss and the terms at the step's start.

    A non-finite loss takes no step (the caller decides what follows).  An L-BFGS line search that
    found no decrease clears the optimiser's memory, so the next step starts from steepest descent.
    With ``shards`` (data-parallel ranks), ``loss_fn`` gives this rank's share: losses, terms and
    gradients are summed over the ranks before the optimiser sees them.  With ``memo``, a second-order
    step reuses the previous step's last evaluation when it was made at the same parameters
    (:class:`LastEvaluation`; pass it only while the objective stays the same), and keeps ``extra()``
    with every evaluation.
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
            if not terms and memo is not None and memo.recall(opt, params):
                terms.update(memo.terms)
                return memo.loss
            opt.zero_grad(set_to_none=True)
            loss, parts = loss_fn()
            parts = {t: total(v) for t, v in parts.items()}
            if not terms:  # the first evaluation is the loss at the start of this step
                terms.update(parts)
            backward(loss)
            loss = loss if shards is None else total(loss)
            if memo is not None and math.isfinite(float(loss.detach())):
                memo.store(opt, params, loss, parts, extra() if extra is not None else None)
            return loss
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
