"""Pruning (Liu et al. 2024, §2.5.1): at one step, drop the KAN edges whose mean magnitude on the PDE
points is below a threshold, and the nodes left without edges; training goes on with the smaller network."""
from __future__ import annotations

import torch
from torch import nn

from kanpde.interpret.importance import prune
from kanpde.interpret.network import kan_of, require_kan
from kanpde.training.callbacks.base import Callback
from kanpde.training.state import TrainState


class Prune(Callback):
    """Prunes at step ``at`` with ``threshold``; the pruned width ends in ``TrainResult.pruned_width``."""

    def __init__(self, at: int, threshold: float) -> None:
        self.at, self.threshold = at, threshold

    def check_model(self, model: nn.Module) -> None:
        require_kan(model, "trainer.prune_at")

    def on_step_start(self, state: TrainState) -> None:
        if state.step != self.at:
            return
        state.end_stage()
        x = state.points["pde"]["x"]
        scores = None
        if state.shards is not None:  # every rank prunes alike: the scores over all ranks' points
            with torch.no_grad():
                scores = [state.shards.sum(s) for s in kan_of(state.model).edge_sizes(x, state.shards.counts["pde"])]
        try:
            state.pruned_width = list(prune(state.model, x, self.threshold, inplace=True, scores=scores).width)
        except ValueError as e:  # nothing changed: the model stays as trained so far
            state.fail(f"trainer.prune_at={state.step}: {e} (trainer.prune_threshold)", "prune")
            return
        state.model_changed()
