"""A disk cache for computed arrays (reference solutions and the like), one HDF5 file per parameter set.

``cached_arrays(name, params, compute)`` returns the arrays that ``compute()`` produces, reading them from
``<cache_dir>/<name>-<key>.h5`` when a previous call stored them there.  The key is a short SHA-256 of the
sorted parameters; the file holds the arrays as root datasets and the parameters as root attributes, and a
file is used only when its attributes equal the parameters asked for.  Files are written atomically
(:func:`kanpde.io.atomic_path`), so an interrupted run leaves no half-written file under the final name.

The key covers the parameters and nothing else: when the code that computes the arrays changes their
values, put a version number among the parameters so that old files stop matching.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Mapping

import h5py
import numpy as np

from kanpde.io import atomic_path

ENV_VAR = "KANPDE_CACHE"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

Param = float | int | str


def cache_dir() -> Path:
    """kanpde's cache (reference solutions; compiled kernels under ``kernels/``): ``$KANPDE_CACHE`` when set
    (and not empty), else ``$XDG_CACHE_HOME/kanpde``, else ``~/.cache/kanpde``. Not created here."""
    if os.environ.get("KANPDE_CACHE_DIR"):
        warnings.warn("kanpde: KANPDE_CACHE_DIR is no longer read; KANPDE_CACHE names kanpde's one cache directory",
                      RuntimeWarning, stacklevel=2)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kanpde"


def _check_params(params: Mapping[str, Param]) -> dict[str, Param]:
    """Parameters as plain Python ``int``/``float``/``str`` values; anything else raises naming the key."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of names to numbers or strings, got {type(params).__name__}")
    out: dict[str, Param] = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"parameter names must be non-empty strings, got {key!r}")
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"parameter {key!r} is a bool; pass it as an int or a string")
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, numbers.Integral):
            out[key] = int(value)
        elif isinstance(value, numbers.Real):
            if not math.isfinite(float(value)):
                raise ValueError(f"parameter {key!r} must be finite, got {value!r}")
            out[key] = float(value)
        else:
            raise TypeError(f"parameter {key!r} must be a float, int or str, got {type(value).__name__}")
    return out


def params_key(params: Mapping[str, Param]) -> str:
    """The short (16 hex digits) SHA-256 of the sorted parameters; ``1``, ``1.0`` and ``"1"`` differ."""
    p = _check_params(params)
    text = json.dumps([[k, type(v).__name__, v] for k, v in sorted(p.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path(name: str, params: Mapping[str, Param], directory: str | os.PathLike | None = None) -> Path:
    """The file that :func:`cached_arrays` uses for ``name`` and ``params`` (it may not exist)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"cache name must be letters, digits, '_', '.' or '-' (not starting with '.' or '-'), got {name!r}")
    directory = cache_dir() if directory is None else Path(directory).expanduser()
    return directory / f"{name}-{params_key(params)}.h5"


def _same(stored, wanted: Param) -> bool:
    if isinstance(stored, bytes):
        stored = stored.decode()
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    if isinstance(stored, (str, np.ndarray)) or isinstance(stored, (bool, np.bool_)):
        return False
    if isinstance(wanted, int):
        return isinstance(stored, numbers.Integral) and int(stored) == wanted
    return isinstance(stored, numbers.Real) and not isinstance(stored, numbers.Integral) and float(stored) == wanted


def _read(path: Path, params: dict[str, Param]) -> dict[str, np.ndarray]:
    """The arrays in ``path``; raises ValueError when its attributes are not ``params`` or it holds no arrays."""
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
        if set(attrs) != set(params) or not all(_same(attrs[k], v) for k, v in params.items()):
            raise ValueError(f"its parameters {attrs} are not the ones asked for {params}")
        arrays = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
    if not arrays:
        raise ValueError("it holds no arrays")
    return {k: np.asarray(v) for k, v in arrays.items()}


def _checked_arrays(result) -> dict[str, np.ndarray]:
    if not isinstance(result, Mapping) or not result:
        raise TypeError(f"compute() must return a non-empty dict of name -> array, got {type(result).__name__}")
    out = {}
    for key, value in result.items():
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            raise TypeError(f"compute() returned an array named {key!r}; names must be non-empty strings without '/'")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"compute() returned {key!r} with dtype {arr.dtype}; only numeric arrays can be cached")
        out[key] = arr
    return out


def cached_arrays(
    name: str,
    params: Mapping[str, Param],
    compute: Callable[[], Mapping[str, np.ndarray]],
    directory: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """The arrays ``compute()`` returns, from ``<directory>/<name>-<key>.h5`` when it already holds them.

    ``directory`` defaults to :func:`cache_dir`.  A cached file is used only if its stored parameters equal
    ``params``.  A file that cannot be read (corrupt, truncated, other parameters) gives a warning naming
    it, and the arrays are recomputed and the file rewritten.  A directory that cannot be created raises
    OSError naming it, before anything is computed; a file that cannot be written gives a warning and the
    computed arrays are returned uncached.
    """
    p = _check_params(params)
    path = cache_path(name, p, directory)
    if path.exists():
        try:
            return _read(path, p)
        except Exception as exc:  # any unreadable file is recomputed, never trusted
            warnings.warn(f"kanpde cache file {path} is unusable ({type(exc).__name__}: {exc}); recomputing it", RuntimeWarning, stacklevel=2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"cannot create the kanpde cache directory {path.parent} ({exc.strerror or exc}); "
            f"set {ENV_VAR} to a writable directory"
        ) from exc
    arrays = _checked_arrays(compute())
    try:
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                for key, value in p.items():
                    f.attrs[key] = value
                for key, arr in arrays.items():
                    f.create_dataset(key, data=arr)
    except OSError as exc:
        warnings.warn(f"could not write kanpde cache file {path} ({exc}); the arrays are returned uncached", RuntimeWarning, stacklevel=2)
    return arrays
