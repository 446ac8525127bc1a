"""The run's record: the history (every ``log_every`` steps) and the stages (one row per grid stage)."""
from __future__ import annotations

import math

from kanpde.models.protocols import GridModel, n_params
from kanpde.pde.metrics import errors, errors_against, predict, relative_l2
from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState

STAGE_COLUMNS = ("step", "time_s", "grid", "n_params", "rel_l2", "mse", "h1_sq")


class HistoryRecorder(Callback):
    """Records ``step, time_s, loss, loss_<term>, rel_l2, grid, unknown_<name>`` and other callbacks' columns."""

    changes_objective = False

    def __init__(self, log_every: int, steps: int) -> None:
        self.log_every, self.steps = log_every, steps

    def _grid(self, state: TrainState) -> float:
        return float(state.model.grid) if isinstance(state.model, GridModel) else 0.0

    def on_fit_start(self, state: TrainState) -> None:
        state.stages = {k: [] for k in STAGE_COLUMNS}
        extra = [c for cb in state.callbacks for c in cb.columns]
        terms = [f"loss_{t}" for t in state.problem.terms]
        state.history = {k: [] for k in ["step", "time_s", "loss", *terms, *[c for c in extra if c.startswith("loss_")], "rel_l2",
                                          "grid", *[f"unknown_{n}" for n in state.problem.unknowns],
                                          *[c for c in extra if not c.startswith("loss_")]]}

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.log_every and state.step != self.steps - 1:
            return
        err = math.nan
        if state.u_exact is not None:
            err = relative_l2(predict(state.model, state.x_eval), state.u_exact).item()
        row = {"step": state.step, "time_s": state.elapsed(), "loss": state.loss,
               **{f"loss_{t}": v.item() for t, v in state.terms.items()}, "rel_l2": err, "grid": self._grid(state),
               **{f"unknown_{n}": float(v.detach()) for n, v in state.problem.unknowns.items()}}
        for cb in state.callbacks:
            row.update(cb.on_record(state))
        for key, value in row.items():
            state.history[key].append(value)

    def on_stage_end(self, state: TrainState) -> None:
        errs = {}
        if state.u_exact is not None:
            errs = (errors_against(state.model, state.x_eval, state.u_exact) if state.against_reference
                    else errors(state.model, state.problem.exact, state.x_eval))
        row = {"step": state.step, "time_s": state.elapsed(), "grid": self._grid(state), "n_params": float(n_params(state.model))}
        for key, values in state.stages.items():
            values.append(row.get(key, errs.get(key, math.nan)))
