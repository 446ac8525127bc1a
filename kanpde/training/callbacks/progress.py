"""A progress bar over the steps with the latest loss and error; off when stderr is not a terminal
(SLURM logs, CI) or with ``trainer.progress=false``."""
from __future__ import annotations

import math

from tqdm.auto import tqdm

from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


class ProgressBar(Callback):
    """A tqdm bar over the steps, with the loss and the error of the last history row."""

    changes_objective = False

    def __init__(self, steps: int, enabled: bool = True) -> None:
        self.steps, self.enabled = steps, enabled
        self.bar: tqdm | None = None
        self.recorded = 0

    def on_fit_start(self, state: TrainState) -> None:
        # disable=None: tqdm switches itself off where its output is not a terminal
        self.bar = tqdm(total=self.steps, disable=None if self.enabled else True, dynamic_ncols=True, leave=False, mininterval=0.5)
        self.recorded = 0

    def on_step_end(self, state: TrainState) -> None:
        self.bar.update(1)
        steps = state.history.get("step", [])
        if len(steps) > self.recorded:  # a new history row: show it
            self.recorded = len(steps)
            err = state.history["rel_l2"][-1]
            self.bar.set_postfix(loss=f"{state.loss:.3e}", rel_l2="nan" if math.isnan(err) else f"{err:.2e}", refresh=False)

    def on_fit_end(self, state: TrainState) -> None:
        self.bar.close()

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.bar.update(state.step + 1)
        self.recorded = len(state.history.get("step", []))
