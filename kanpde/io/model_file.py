"""The model checkpoint ``model.pt``: a model's class path, ``config()`` and state, written atomically."""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn


from kanpde.io.files import atomic_path


def save_model(path: str | os.PathLike, model: nn.Module) -> Path:
    """Save ``model`` with what rebuilds it: its class path, ``config()`` and state on the CPU."""
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} has no config(); kanpde can only save models that describe their architecture")
    payload = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": model.config(),
        "state_dict": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in model.state_dict().items()},
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by :func:`save_model`, on the CPU, whatever device trained it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}")
    try:  # the file holds only tensors and plain values: torch's safe loader reads it, and nothing else runs
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a kanpde model file that loads safely: {e}") from None
    module_name, _, cls_name = str(payload.get("class", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"{path} names the model class {payload.get('class')!r}, which cannot be imported: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{path} names {payload.get('class')!r}, which is not a torch module class; kanpde rebuilds only models")
    model = cls(**payload["config"])
    model.to(getattr(torch, payload.get("dtype", "float32")))
    model.load_state_dict(payload["state_dict"])
    return model
