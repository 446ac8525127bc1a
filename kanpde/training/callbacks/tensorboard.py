"""TensorBoard logging: every history row's scalars (loss, loss_<term>, rel_l2, grid, ...) under ``log_dir``,
for users who watch runs that way (``pip install kanpde[tensorboard]``, ``trainer.tensorboard=true``)."""
from __future__ import annotations

import math
from pathlib import Path

from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


class TensorBoardLogger(Callback):
    """Writes the scalars of each new history row with ``torch.utils.tensorboard``."""

    changes_objective = False

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch raises this when the tensorboard package is missing
            raise ValueError(f"trainer.tensorboard=true needs the tensorboard package: pip install 'kanpde[tensorboard]' ({e})") from None
        self.log_dir = Path(log_dir)
        self._writer_cls = SummaryWriter
        self.writer = None
        self.written = 0

    def on_fit_start(self, state: TrainState) -> None:
        self.writer = self._writer_cls(log_dir=str(self.log_dir))
        self.written = 0

    def on_step_end(self, state: TrainState) -> None:
        steps = state.history.get("step", [])
        for i in range(self.written, len(steps)):
            for key, values in state.history.items():
                if key != "step" and math.isfinite(values[i]):
                    self.writer.add_scalar(key, values[i], int(steps[i]))
        self.written = len(steps)

    def on_fit_end(self, state: TrainState) -> None:
        self.writer.flush()
        self.writer.close()

    def restore_state(self, state: TrainState, saved: dict) -> None:
        self.written = len(state.history.get("step", []))  # rows the interrupted run already wrote
