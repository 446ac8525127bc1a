"""Launching the Triton kernels of a B-spline KAN layer's jet (:mod:`.triton_kernels`): the CUDA
implementation of :func:`kanpde.models.layer_op.layer_jet`.

CUDA tensors run the compiled kernels.  CPU tensors run the same kernels in Triton's interpreter, when
``TRITON_INTERPRET=1`` was set before Triton was imported: that is how the tests check the kernels on a
machine without a GPU (slowly; the interpreter is a Python loop over the programs).

Triton is optional: :func:`usable` says whether the kernels may be used (Triton importable, a CUDA
device, float32 or float64, ``KANPDE_TRITON`` not ``0``, and no earlier failure).  A kernel that fails
to compile or launch on the user's GPU makes :func:`attempt` warn once, naming the error; from then on
the layers keep their torch operations.
"""
from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from functools import lru_cache
from types import ModuleType
from typing import Any, Callable, Optional

import torch

Tensor = torch.Tensor
DTYPES = (torch.float32, torch.float64)
_failure: list[str] = []  # the error that disabled the kernels, once one has
_lock = threading.Lock()


def installed() -> bool:
    """Whether Triton can be imported."""
    return importlib.util.find_spec("triton") is not None


def usable(dtype: torch.dtype) -> bool:
    """Whether the compiled kernels may run tensors of ``dtype`` on this machine's CUDA devices."""
    return (dtype in DTYPES and not _failure and os.environ.get("KANPDE_TRITON", "1") != "0"
            and torch.cuda.is_available() and installed())


def attempt(run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, or None after warning (once) that the Triton kernels failed and are off from now on."""
    if _failure:
        return None
    try:
        return run(*args)
    except Exception as err:  # a compiler, driver or resource error of Triton's: fall back, do not fail the run
        with _lock:
            if not _failure:
                _failure.append(f"{type(err).__name__}: {err}")
                warnings.warn(f"kanpde: the Triton kernel of the KAN layer failed on this GPU ({_failure[0][:600]}); "
                              "KAN layers use torch operations from now on (slower)", RuntimeWarning, stacklevel=2)
        return None


def kernels(device: torch.device) -> ModuleType:
    """The kernels' module for tensors on ``device``: compiled for a CUDA device; for CPU tensors, Triton's
    interpreter, which must have been chosen (``TRITON_INTERPRET=1``) before Triton was first imported."""
    from kanpde.models import triton_kernels

    if device.type != "cuda" and not interpreting():
        raise RuntimeError("the Triton kernels run CPU tensors only in Triton's interpreter: set TRITON_INTERPRET=1 "
                           "before Triton is first imported (the tests do, on machines without a GPU)")
    return triton_kernels


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (``TRITON_INTERPRET=1`` when it was imported)."""
    from triton import knobs

    return bool(knobs.runtime.interpret)


@lru_cache(maxsize=None)
def _pair_index(pair_a: tuple[int, ...], pair_b: tuple[int, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """The pairs as index tensors on ``device``, made once (a list copied to a GPU per call would be a transfer per layer)."""
    return (torch.tensor(pair_a or (0,), dtype=torch.int32, device=device),
            torch.tensor(pair_b or (0,), dtype=torch.int32, device=device))


def _pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _launch(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
            pair_a: list[int], pair_b: list[int]) -> tuple[ModuleType, tuple, tuple, dict, tuple]:
    """The kernels' module, the grid, the leading arguments both kernels take, their sizes, and the tensors they use."""
    if h.dtype not in DTYPES:
        raise TypeError(f"the Triton kernels take float32 or float64, got {h.dtype}")
    dtype = h.dtype
    h, F, Q = h.contiguous(), F.to(dtype).contiguous(), Q.to(dtype).contiguous()
    S = None if S is None else S.to(dtype).contiguous()
    step = step.to(dtype).contiguous()
    left = (lo.to(dtype) - k * step).contiguous()  # torch's rounding of the first padded knot
    knots = None if knots is None else knots.to(dtype).contiguous()
    sg = torch.sigmoid(h)
    n_in, n_batch = h.shape
    n_cells, n_out, n_dim, n_pairs = Q.shape[1] - 1, Q.shape[3], F.shape[0], len(pair_a)
    pa, pb = _pair_index(tuple(pair_a), tuple(pair_b), h.device)
    out_p, dim_p, pair_p = _pow2(n_out), _pow2(max(n_dim, 1)), _pow2(max(n_pairs, 1))
    block = min(128, max(16, _pow2(4096 // (out_p * max(dim_p, pair_p)) + 1) // 2))  # a tile of at most ~4k values
    sizes = dict(N_IN=n_in, N_OUT=n_out, K=k, N_CELLS=n_cells, N_DIM=n_dim, N_PAIRS=n_pairs, HAS_S=S is not None,
                 FREE=knots is not None, POW=1 << (n_cells.bit_length() - 1), LOG=n_cells.bit_length() - 1,
                 OUT_P=out_p, DIM_P=dim_p, PAIR_P=pair_p, BLOCK=block)
    # empty or absent tensors are never read (their loads are masked or compiled out): h stands in for them
    args = (h, sg, F if F.numel() else h, h if S is None else S, Q, left, step, h if knots is None else knots, pa, pb)
    module = kernels(h.device)
    return module, (-(-n_batch // block),), args, sizes, (n_batch, n_dim, n_out)


def forward(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
            pair_a: list[int], pair_b: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """The layer's jet (layouts of :mod:`.layer_op`) by the Triton kernel: value, first, second."""
    module, grid, args, sizes, (n_batch, n_dim, n_out) = _launch(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)
    value = h.new_empty(n_out, n_batch)
    first = h.new_empty(n_dim, n_out, n_batch)
    second = h.new_empty(len(pair_a), n_out, n_batch)
    if n_batch:
        module.layer_jet_forward[grid](*args, value, first if first.numel() else value, second if second.numel() else value,
                                       n_batch, **sizes)
    return value, first, second


def backward(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
             pair_a: list[int], pair_b: list[int], g_value: Optional[Tensor], g_first: Optional[Tensor],
             g_second: Optional[Tensor], need_input: bool) -> tuple[Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """The gradients of a loss given its gradients ``g_*`` (None: zero) of :func:`forward`'s outputs:
    dQ, and dh, dF, dS where ``need_input`` (dS only where S is given), else None."""
    module, grid, args, sizes, (n_batch, _, _) = _launch(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)
    grads = [None if g is None or not g.numel() else g.to(h.dtype).contiguous() for g in (g_value, g_first, g_second)]
    dQ = torch.zeros(Q.shape, dtype=h.dtype, device=h.device)
    dh = torch.zeros_like(h) if need_input else None
    dF = h.new_zeros(F.shape) if need_input else None
    dS = h.new_zeros(S.shape) if need_input and S is not None else None
    if n_batch:
        standin = dQ  # never written through when its flag is off
        module.layer_jet_backward[grid](*args, *(standin if g is None else g for g in grads), dQ,
                                        standin if dh is None else dh,
                                        standin if dF is None or not dF.numel() else dF,
                                        standin if dS is None else dS, n_batch, **sizes,
                                        HAS_GV=grads[0] is not None, HAS_GF=grads[1] is not None,
                                        HAS_GS=grads[2] is not None, NEED_INPUT=need_input)
    return dQ, dh, dF, dS
