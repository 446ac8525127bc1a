"""The results file (``results.h5``) and the model checkpoint (``model.pt``), both written atomically.

``results.h5`` layout (read by plots and comparisons, nothing else):
    root attributes: problem, model, family, basis, inputs, outputs, n_params, rel_l2, mse, h1_sq,
        max_abs_err, wall_time_s, steps, seed, device, dtype, hard_constraints, status, message,
        config (composed config as YAML); rel_l2_<output> for multi-output problems;
        unknown_<name> (and unknown_<name>_rel_err) for learned coefficients
    history/: step, time_s, loss, loss_<term>, rel_l2, grid, unknown_<name>   (1-D datasets of equal length)
    stages/: step, time_s, grid, n_params, rel_l2, mse, h1_sq  (one entry per grid stage; the last is the final model)
    eval/: x (m, n_in), u_pred (m, n_out), u_exact (m, n_out: the exact or reference solution; absent without one)
    symbolic/ (symbolic KANs only): layer, i, o, function, r2, a, b, c, d  (one entry per symbolic edge)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import torch


from kanpde.io.files import atomic_path


def _array(v: Any) -> np.ndarray:
    return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def write_results(
    path: str | os.PathLike,
    attrs: Mapping[str, Any],
    history: Mapping[str, Any],
    evaluation: Mapping[str, Any],
    stages: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``results.h5``: root attributes and the ``history``, ``eval`` and (optional) ``stages`` groups,
    plus one group per entry of ``tables`` (columns of equal length; strings allowed). Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in attrs.items():
                if value is None:
                    continue
                f.attrs[key] = value
            hist = f.create_group("history")
            for key, value in history.items():
                hist.create_dataset(key, data=_array(value))
            ev = f.create_group("eval")
            for key, value in evaluation.items():
                if value is not None:
                    ev.create_dataset(key, data=_array(value))
            if stages is not None:
                st = f.create_group("stages")
                for key, value in stages.items():
                    st.create_dataset(key, data=_array(value))
            for name, columns in (tables or {}).items():
                g = f.create_group(name)
                for key, value in columns.items():
                    if len(value) and isinstance(value[0], str):
                        g.create_dataset(key, data=np.array(value, dtype=object), dtype=h5py.string_dtype())
                    else:
                        g.create_dataset(key, data=_array(value))
    return path


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``results.h5`` into ``{"attrs", "history", "eval", "stages", ...}`` dicts of Python/numpy values.

    ``stages`` is empty for files written without it; further groups (``symbolic``) appear under their names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    with h5py.File(path, "r") as f:
        def plain(v: Any) -> Any:
            if isinstance(v, bytes):
                return v.decode()
            if isinstance(v, np.generic):
                return v.item()
            return v
        def column(d: h5py.Dataset) -> Any:
            return list(d.asstr()[()]) if h5py.check_string_dtype(d.dtype) else d[()]
        out = {
            "attrs": {k: plain(v) for k, v in f.attrs.items()},
            "history": {k: f["history"][k][()] for k in f["history"]},
            "eval": {k: f["eval"][k][()] for k in f["eval"]},
            "stages": {k: f["stages"][k][()] for k in f["stages"]} if "stages" in f else {},
        }
        for name in f:  # further tables (symbolic/)
            if name not in out:
                out[name] = {k: column(f[name][k]) for k in f[name]}
        return out


