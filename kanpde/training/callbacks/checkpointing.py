"""Checkpoints and clean interrupts: ``checkpoint.pt`` every few steps and at the last step, and
SIGINT/SIGTERM stop training at the next step boundary with a checkpoint written (status
``interrupted``), so the run continues with ``trainer.resume=auto``.  Where a job scheduler's
library handles SIGUSR1/SIGUSR2 (submitit's "about to time out": it requeues the job), the
checkpoint is written first, at the step boundary, and then its handler runs."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from kanpde.training.callbacks.base import Callback
from kanpde.training.checkpoint import save_checkpoint
from kanpde.training.state import TrainState

SIGNALS = (signal.SIGINT, signal.SIGTERM)
WARNINGS = tuple(s for s in (getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)) if s is not None)


class Checkpointing(Callback):
    """Writes ``path`` after every ``every``-th step (0: none on a schedule), the last step and an interrupt.

    Runs last among the callbacks, so the checkpoint holds the step's history row.  While training,
    SIGINT and SIGTERM only set a flag (in the main thread; elsewhere signals keep their handlers).
    """

    changes_objective = False

    def __init__(self, path: str | Path, every: int, steps: int) -> None:
        self.path, self.every, self.steps = Path(path), every, steps
        self.received: int | None = None
        self.warning: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum

    def _warned(self, signum: int, frame: object) -> None:
        self.warning = signum

    def on_fit_start(self, state: TrainState) -> None:
        self.received = self.warning = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
            for s in WARNINGS:  # only where someone (a scheduler's library) handles them
                if callable(signal.getsignal(s)):
                    self._previous[s] = signal.signal(s, self._warned)

    def on_step_end(self, state: TrainState) -> None:
        done = state.step + 1
        if state.shards is not None:  # ranks stop together: a signal to any of them stops all at this step
            heard = state.shards.max(torch.tensor([float(self.received or 0), float(self.warning or 0)]))
            self.received, self.warning = (int(v) or None for v in heard.tolist())
        warned = self.warning is not None
        if warned or self.received is not None or done == self.steps or (self.every and done % self.every == 0):
            save_checkpoint(self.path, state)
        if warned:  # checkpoint written: now the scheduler's own handler (it may requeue and exit)
            signum, self.warning = self.warning, None
            if callable(self._previous.get(signum)):  # a rank that only heard of it from another has none
                self._previous[signum](signum, None)
        if self.received is not None:
            name = signal.Signals(self.received).name
            state.fail(f"interrupted by {name} after step {state.step}; {self.path} continues it (trainer.resume=auto)", name,
                       status="interrupted")

    def on_fit_end(self, state: TrainState) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
