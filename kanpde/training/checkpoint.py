"""``checkpoint.pt``: everything a run needs to continue exactly where it stopped.

A checkpoint holds the model's state (and its grid), the optimiser's state, the step, the history
and stages so far, the collocation points (RAD moves them), the RBA weights, the random-number
states and a fingerprint of the settings; it is written atomically and read with torch's safe
loader.  Resuming from one after step s runs steps s+1, s+2, ... exactly as the uninterrupted
run would have (same history, float64 on the CPU).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kanpde.io.files import atomic_path
from kanpde.models.protocols import GridModel
from kanpde.pde.problem import points_digest
from kanpde.training.state import TrainState

FORMAT = 1
UNCHECKED = ("resume", "checkpoint", "progress", "tensorboard", "log_every", "steps", "device", "compile", "divergence")
"""Trainer settings a resumed run may change (``steps``: a run can be extended; ``device``: it may move)."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another run."""


def fingerprint(state: TrainState) -> dict[str, Any]:
    """What must match for a checkpoint to continue this run: problem, model, points and settings."""
    trainer = {k: v for k, v in state.config.as_dict().items() if k not in UNCHECKED}
    model = state.model.config() if hasattr(state.model, "config") else {}
    return {"problem": f"{type(state.problem).__module__}.{type(state.problem).__qualname__}", "problem_name": state.problem.name,
            "model": f"{type(state.model).__module__}.{type(state.model).__qualname__}",
            "width": list(model.get("width", [])), "trainer": repr(trainer), "seed": state.seed,
            "points": points_digest(state.initial_points)}


def _rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, key, *rest = states["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), *rest))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in states["python"]))


def save_checkpoint(path: str | Path, state: TrainState) -> Path:
    """Write the run as it stands after step ``state.step`` (completed) to ``path``, atomically."""
    cpu = lambda v: v.detach().cpu() if isinstance(v, torch.Tensor) else v  # noqa: E731
    payload = {
        "format": FORMAT, "fingerprint": fingerprint(state), "step": state.step, "elapsed": state.elapsed(),
        "grid": int(state.model.grid) if isinstance(state.model, GridModel) else 0,
        "model": {k: cpu(v) for k, v in state.trainable.state_dict().items()},
        "optimizer": state.optimizer.state_dict() if state.optimizer is not None else {},
        "optimizer_kind": type(state.optimizer).__name__,
        "history": state.history, "stages": state.stages,
        "points": {t: {k: cpu(v) for k, v in p.items()} for t, p in state.points.items()},
        "attention": {t: cpu(v) for t, v in state.attention.items()},
        "callbacks": {type(cb).__name__: cb.checkpoint_state() for cb in state.callbacks},
        "rng": _rng_states(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"trainer.resume: no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, or not a torch file
        raise CheckpointError(f"trainer.resume: {path} is not a readable kanpde checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"trainer.resume: {path} is not a kanpde checkpoint of format {FORMAT}")
    return payload


def check_matches(payload: dict[str, Any], state: TrainState, path: str | Path) -> None:
    """Refuse a checkpoint of another problem, model, point set or settings, naming what differs."""
    mine, theirs = fingerprint(state), payload["fingerprint"]
    differ = [k for k in mine if mine[k] != theirs.get(k)]
    if differ:
        detail = "; ".join(f"{k}: checkpoint {theirs.get(k)!r}, this run {mine[k]!r}" for k in differ)
        raise CheckpointError(f"trainer.resume: {path} belongs to another run ({detail}); "
                              f"use trainer.resume=never to start afresh or another run directory")


def restore(state: TrainState, payload: dict[str, Any]) -> None:
    """Put the run back where the checkpoint left it (call after ``on_fit_start`` and the first optimiser)."""
    model: nn.Module = state.model
    if isinstance(model, GridModel) and payload["grid"] != model.grid:
        model.extend_grid(payload["grid"])  # the shapes of the extended grid; the values come next
    try:
        state.trainable.load_state_dict({k: v.to(state.device) if v.is_floating_point() else v for k, v in payload["model"].items()})
    except RuntimeError as e:
        raise CheckpointError(f"trainer.resume: the checkpoint's model does not fit this one (pruned or symbolic edges "
                              f"cannot be resumed yet): {str(e).splitlines()[0]}") from None
    state.step = payload["step"]
    state.t0 -= payload["elapsed"]
    state.history, state.stages = payload["history"], payload["stages"]
    state.points = {t: {k: v.to(device=state.device, dtype=state.dtype) for k, v in p.items()} for t, p in payload["points"].items()}
    state.attention = {t: v.to(device=state.device, dtype=state.dtype) for t, v in payload["attention"].items()}
    state.new_optimizer()
    if type(state.optimizer).__name__ == payload["optimizer_kind"] and payload["optimizer"]:
        state.optimizer.load_state_dict(payload["optimizer"])
    for cb in state.callbacks:
        cb.restore_state(state, payload["callbacks"].get(type(cb).__name__, {}))
    # The problem's first residual evaluation learns which partials each term needs (its plan), and
    # later ones compute only those, which can change the last bit: evaluate once, as the
    # uninterrupted run did at step 0, so the resumed steps compute exactly as its later steps did.
    state.problem.pointwise(state.loss_model, state.points, state.derivatives)
    _set_rng_states(payload["rng"])
