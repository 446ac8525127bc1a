"""The compiled CPU kernel of a B-spline KAN layer's jet (``layer_jet.c``): the CPU implementation of the
registered operator :func:`kanpde.models.layer_op.layer_jet`.

On the CPU a layer's forward derivative pass is a few dozen small tensor operations, whose fixed
costs dominate at the sizes physics-informed training uses.  ``layer_jet.c`` does the same work,
forward and backward, in one blocked loop over the points that the C compiler vectorises.  It is
plain C (no torch headers), compiled on first use with the system's C compiler (about a second)
into kanpde's private per-user cache (``$KANPDE_CACHE/kernels``, else ``~/.cache/kanpde/kernels``) and
loaded with ctypes after its content hash is checked.
Built with OpenMP (``-fopenmp``) it splits the points over torch's threads; loaded into a process
that has imported torch, it shares torch's OpenMP runtime and its threads.

Where it cannot be used (no compiler, a GPU tensor, a dtype other than float32/float64, or
``KANPDE_NATIVE=0``) :func:`available` says so and the layer keeps its torch operations, which
compute the same numbers.  A failed build warns once, naming the compiler and its message.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from kanpde.io.cache import cache_dir as kanpde_cache_dir

SOURCE = Path(__file__).with_name("layer_jet.c")
FLAGS = ("-O3", "-fPIC", "-shared", "-ffp-contract=off")
"""-ffp-contract=off: no fused multiply-adds, so a point on a knot lands in the cell torch picks."""
C_TYPES = {torch.float32: "float", torch.float64: "double"}
MAX_K = 15
"""Highest spline degree the kernel takes (its MAX_K)."""

_libraries: dict[torch.dtype, ctypes.CDLL | None] = {}
_lock = threading.Lock()
_switch: list[bool] = []  # innermost switched() setting last


def enabled() -> bool:
    """Whether the kernels may be used: ``KANPDE_NATIVE=0`` turns them off (this C kernel and the Triton one,
    :mod:`.layer_op`), and so does :func:`switched` (False)."""
    if _switch:
        return _switch[-1]
    return os.environ.get("KANPDE_NATIVE", "1") != "0"


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """Use the kernels (``on``: C on the CPU, Triton on CUDA) or the torch operations inside the block, whatever
    ``KANPDE_NATIVE`` says (to compare the two, as the tests and ``scripts/bench_speed.py`` do)."""
    _switch.append(bool(on))
    try:
        yield
    finally:
        _switch.pop()


def private(directory: Path) -> bool:
    """Whether ``directory`` is this user's and no one else can write to it (so no one else can plant a library there)."""
    st = directory.stat()
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


@lru_cache(maxsize=None)
def _private_temporary() -> Path:
    return Path(tempfile.mkdtemp(prefix="kanpde-kernels-"))  # mode 0700, new for this process


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``kernels/`` in kanpde's cache (:func:`kanpde.io.cache.cache_dir`),
    created private (mode 0700); if that cannot be had, or another user could write there, a fresh
    private temporary directory of this process."""
    directory = kanpde_cache_dir() / "kernels"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if private(directory):
            return directory
        reason = f"{directory} is writable by other users or owned by another"
    except OSError as e:
        reason = str(e)
    warnings.warn(f"kanpde: the kernel cache is not private ({reason}); building into a private temporary directory", RuntimeWarning,
                  stacklevel=2)
    return _private_temporary()


def compiler() -> str | None:
    """The C compiler to build with: ``$CC``, else the first of cc, gcc, clang on the PATH."""
    return os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


def library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The kernel for ``dtype`` (float32 or float64), built and loaded on first use; None where unavailable."""
    if dtype not in C_TYPES or not enabled():
        return None
    with _lock:
        if dtype not in _libraries:
            _libraries[dtype] = _load(dtype)
        return _libraries[dtype]


def available(*tensors: torch.Tensor) -> bool:
    """Whether the kernel can take these tensors: all on the CPU, one dtype it is built for, and it builds."""
    dtype = tensors[0].dtype
    return all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) and library(dtype) is not None


def _load(dtype: torch.dtype) -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        warnings.warn("kanpde: no C compiler found (set CC): KAN layers use torch operations for their derivative pass, "
                      "which is slower on the CPU", RuntimeWarning, stacklevel=3)
        return None
    errors = []
    for openmp in (["-fopenmp"], []):  # without OpenMP the kernel runs on one thread
        flags = [*FLAGS, *openmp, f"-DREAL={C_TYPES[dtype]}"]
        for directory in dict.fromkeys((cache_dir(), _private_temporary())):  # the temporary one if the cache is not writable
            try:
                lib = ctypes.CDLL(str(_build(cc, flags, directory, C_TYPES[dtype])))
            except OSError as err:
                errors.append(str(err))
                continue
            n, p = ctypes.c_int64, ctypes.c_void_p
            lib.layer_jet_forward.argtypes = [n] * 7 + [p] * 13 + [n]
            lib.layer_jet_backward.argtypes = [n] * 7 + [p] * 17 + [n]
            lib.layer_jet_forward.restype = lib.layer_jet_backward.restype = None
            return lib
    warnings.warn(f"kanpde: could not build the KAN layer kernel {SOURCE.name} ({errors[0]}); KAN layers use torch "
                  "operations for their derivative pass, which is slower on the CPU", RuntimeWarning, stacklevel=3)
    return None


def _build(cc: str, flags: list[str], directory: Path, name: str) -> Path:
    """The shared library for these flags in ``directory``, compiled unless already there; OSError if it cannot be."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *flags, platform.machine()]).encode()).hexdigest()[:16]
    target = directory / f"layer_jet_{name}_{key}.so"
    manifest = target.with_suffix(".sha256")  # the library's own hash, written by the build that made it
    if target.exists() and manifest.exists() and manifest.read_text().strip() == _digest(target):
        return target
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:  # built aside, then moved in whole: parallel jobs may build at once
        built = Path(tmp) / target.name
        proc = subprocess.run([cc, *flags, str(SOURCE), "-o", str(built), "-lm"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"{cc} exited with {proc.returncode}: {proc.stderr.strip()[-600:]}")
        (Path(tmp) / manifest.name).write_text(_digest(built))
        os.replace(built, target)
        os.replace(Path(tmp) / manifest.name, manifest)
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@lru_cache(maxsize=None)
def _pair_index(pair_a: tuple[int, ...], pair_b: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(pair_a or [0], dtype=torch.int64), torch.tensor(pair_b or [0], dtype=torch.int64)


def forward(h: torch.Tensor, F: torch.Tensor, S: torch.Tensor | None, Q: torch.Tensor, lo: torch.Tensor, step: torch.Tensor,
            knots: torch.Tensor | None, k: int, pair_a: list[int], pair_b: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's jet by the kernel, in the layouts of :func:`kanpde.models.layer_op.layer_jet`: h (in, batch),
    F (dim, in, batch), S (pairs, in, batch) or None, Q (in, cells + 1, k + 2, out), lo and step (in,), knots
    (in, cells + 1) or None -> value (out, batch), first (dim, out, batch), second (pairs, out, batch)."""
    lib, head, _held, (n_batch, n_dim, n_out) = _arguments(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)
    value = h.new_empty(n_out, n_batch)
    first = h.new_empty(n_dim, n_out, n_batch)
    second = h.new_empty(len(pair_a), n_out, n_batch)
    lib.layer_jet_forward(*head, _ptr(value), _ptr(first), _ptr(second), torch.get_num_threads())
    return value, first, second


def backward(h: torch.Tensor, F: torch.Tensor, S: torch.Tensor | None, Q: torch.Tensor, lo: torch.Tensor, step: torch.Tensor,
             knots: torch.Tensor | None, k: int, pair_a: list[int], pair_b: list[int], g_value: torch.Tensor | None,
             g_first: torch.Tensor | None, g_second: torch.Tensor | None, need_input: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients of a loss given its gradients ``g_*`` (None: zero) of :func:`forward`'s outputs:
    dQ, and dh, dF, dS where ``need_input`` (dS only where S is given), else None."""
    lib, head, held, _ = _arguments(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)
    grads = [None if g is None else g.contiguous() for g in (g_value, g_first, g_second)]
    dh = h.new_empty(h.shape) if need_input else None
    dF = h.new_empty(F.shape) if need_input else None
    dS = h.new_empty(S.shape) if need_input and S is not None else None
    n_threads = torch.get_num_threads()
    dQ = h.new_zeros(n_threads, *held[3].shape)  # one accumulator per thread
    lib.layer_jet_backward(*head, *map(_ptr, grads), _ptr(dQ), _ptr(dh), _ptr(dF), _ptr(dS), n_threads)
    return dQ.sum(0), dh, dF, dS


def _arguments(h, F, S, Q, lo, step, knots, k, pair_a, pair_b):
    """The library for h's dtype, the leading arguments both entry points take, the (contiguous) tensors they
    point into, and (batch, dim, out)."""
    if k > MAX_K:
        raise ValueError(f"the KAN layer kernel takes spline degrees up to {MAX_K}, got k={k}")
    lib = library(h.dtype)
    if lib is None:
        raise RuntimeError(f"the KAN layer kernel is not available for {h.dtype} (see kanpde.models.native.available)")
    h, F, Q = h.contiguous(), F.contiguous(), Q.contiguous()
    S = None if S is None else S.contiguous()
    if lo.dtype != h.dtype:
        lo, step = lo.to(h.dtype), step.to(h.dtype)
    lo, step = lo.contiguous(), step.contiguous()
    knots = None if knots is None else knots.to(h.dtype).contiguous()
    sg = torch.sigmoid(h)  # torch's vectorised exp; the kernel derives silu's derivatives from it
    (n_in, n_batch), n_dim = h.shape, F.shape[0]
    n_cells, n_out = Q.shape[1] - 1, Q.shape[3]
    pa, pb = _pair_index(tuple(pair_a), tuple(pair_b))
    head = (n_batch, n_in, n_out, k, n_cells, n_dim, len(pair_a), _ptr(pa), _ptr(pb), _ptr(lo), _ptr(step),
            _ptr(knots), _ptr(h), _ptr(sg), _ptr(F), _ptr(S), _ptr(Q))
    # the tensors behind the pointers: the caller holds them until the call returns
    return lib, head, (h, F, S, Q, lo, step, knots, sg, pa, pb), (n_batch, n_dim, n_out)
