"""The results record ``results.h5``: one schema (:class:`RunAttributes`) shared by the writer and every reader.

Layout (``schema_version`` 2; a reader refuses any other version, and reads a file without one as 1):
    root attributes: the fields of :class:`RunAttributes`, plus the per-run keys of :data:`PER_RUN_KEYS`
    history/: step, time_s, loss, loss_<term>, rel_l2, grid, unknown_<name>, ...  (1-D datasets of equal length)
    stages/: step, time_s, grid, n_params, rel_l2, mse, h1_sq  (one entry per grid stage; the last is the final model)
    eval/: x (m, n_in), u_pred (m, n_out), u_exact (m, n_out: the exact or reference solution; absent without one)
    symbolic/ (symbolic KANs only): layer, i, o, function, r2, a, b, c, d  (one entry per symbolic edge)
"""
from __future__ import annotations

import math
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import torch


from kanpde.io.files import atomic_path

SCHEMA_VERSION = 2
"""Version of the layout below; bump it when a field changes meaning or a reader would misread a file."""

PER_RUN_KEYS = ("rel_l2_<output>", "unknown_<name>", "unknown_<name>_rel_err", "pruned_width", "formula", "formula_rel_l2")
"""Root attributes some runs add: per-output errors of multi-output problems, learned coefficients
(and their error where the truth is known), and what pruning and symbolic fitting left."""


class SchemaError(ValueError):
    """A results file this kanpde cannot read (another schema version, or a required field missing)."""


@dataclass
class RunAttributes:
    """The root attributes of ``results.h5``; readers get every field, with these defaults where an older file lacks one."""

    problem: str
    family: str  # kan, kan-chebyshev, kan-rbf or mlp: comparisons keep the bases apart
    n_params: int
    status: str  # ok, failed (non-finite), diverged or interrupted (checkpoint.pt continues it)
    model: str = ""  # e.g. KAN[2, 10, 1]
    width: list = field(default_factory=list)
    basis: str = ""
    inputs: str = ""
    outputs: str = ""
    hard_constraints: str = ""  # condition terms imposed exactly (not in the loss)
    grid: int = 0
    k: int = 0
    rel_l2: float = math.nan
    mse: float = math.nan
    h1_sq: float = math.nan
    max_abs_err: float = math.nan
    wall_time_s: float = math.nan
    steps: int = 0
    seed: int = -1
    device: str = ""
    dtype: str = ""
    optimizer: str = ""
    adam_steps: int = 0
    lr: float = math.nan
    grid_schedule: str = ""  # step:grid of each extension made
    n_interior: int = 0
    n_boundary: int = 0
    points_hash: str = ""  # same hash: trained on the same collocation points
    threads: int = 0
    derivatives: str = ""  # the back end residual derivatives used
    compile: bool = False
    kernel: bool = False  # B-spline layers' derivative pass in a kernel (C on the CPU, Triton on CUDA)
    message: str = ""
    created: str = ""
    start_time: float = math.nan  # unix seconds: when the run started and finished
    end_time: float = math.nan
    config: str = ""  # the composed config as YAML
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def required(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]

    @classmethod
    def complete(cls, attrs: Mapping[str, Any], path: str | os.PathLike = "") -> dict[str, Any]:
        """``attrs`` read from a file, checked for its version and filled with the defaults of missing fields."""
        version = int(attrs.get("schema_version", 1))
        if version not in (1, SCHEMA_VERSION):
            raise SchemaError(f"{path}: results schema_version {version} is not one this kanpde reads "
                              f"(1 or {SCHEMA_VERSION}); upgrade kanpde to read it")
        missing = [k for k in cls.required() if k not in attrs]
        if missing:
            raise SchemaError(f"{path}: not a kanpde results file, root attribute(s) {missing} missing")
        out = {f.name: f.default if f.default is not MISSING else f.default_factory() for f in fields(cls)
               if f.default is not MISSING or f.default_factory is not MISSING}
        out.update(attrs)
        out["schema_version"] = version
        return out


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
    attrs = {**(asdict(attrs) if isinstance(attrs, RunAttributes) else attrs), "schema_version": SCHEMA_VERSION}
    missing = [k for k in RunAttributes.required() if k not in attrs]
    if missing:
        raise SchemaError(f"results for {path} lack the required attribute(s) {missing}")
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

    ``attrs`` holds every :class:`RunAttributes` field (defaults for those an older file lacks); a file
    of another schema version raises :class:`SchemaError`.  ``stages`` is empty for files written
    without it; further groups (``symbolic``) appear under their names.
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
            "attrs": RunAttributes.complete({k: plain(v) for k, v in f.attrs.items()}, path),
            "history": {k: f["history"][k][()] for k in f["history"]},
            "eval": {k: f["eval"][k][()] for k in f["eval"]},
            "stages": {k: f["stages"][k][()] for k in f["stages"]} if "stages" in f else {},
        }
        for name in f:  # further tables (symbolic/)
            if name not in out:
                out[name] = {k: column(f[name][k]) for k in f[name]}
        return out


