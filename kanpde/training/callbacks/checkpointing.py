"""Checkpoints and clean interrupts: ``checkpoint.pt`` every few steps and at the last step, and
SIGINT/SIGTERM stop training at the next step boundary with a checkpoint written (status
``interrupted``), so the run continues with ``trainer.resume=auto``."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

from kanpde.training.callbacks.base import Callback
from kanpde.training.checkpoint import save_checkpoint
from kanpde.training.state import TrainState

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Checkpointing(Callback):
    """Writes ``path`` after every ``every``-th step (0: none on a schedule), the last step and an interrupt.

    Runs last among the callbacks, so the checkpoint holds the step's history row.  While training,
    SIGINT and SIGTERM only set a flag (in the main thread; elsewhere signals keep their handlers).
    """

    def __init__(self, path: str | Path, every: int, steps: int) -> None:
        self.path, self.every, self.steps = Path(path), every, steps
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def on_fit_start(self, state: TrainState) -> None:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def on_step_end(self, state: TrainState) -> None:
        done = state.step + 1
        if self.received is not None or done == self.steps or (self.every and done % self.every == 0):
            save_checkpoint(self.path, state)
        if self.received is not None:
            name = signal.Signals(self.received).name
            state.fail(f"interrupted by {name} after step {state.step}; {self.path} continues it (trainer.resume=auto)",
                       status="interrupted")

    def on_fit_end(self, state: TrainState) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
