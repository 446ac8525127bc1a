"""The B-spline KAN layer's jet as one registered PyTorch operator, ``kanpde::layer_jet``.

One operator, one implementation per device:

- CPU: the compiled C kernel (:mod:`.native`);
- CUDA: the Triton kernels (:mod:`.triton_jet`), where Triton is installed and compiles;
- anywhere else, or where those are missing: torch operations (:func:`reference`), the same numbers.

Being an operator rather than a Python function, it is opaque to ``torch.compile``: a compiled model
keeps the kernel (with the ``fake`` shape functions registered here it traces without graph breaks),
where the kernel used to be bypassed under compilation.  Its backward is a second operator,
``kanpde::layer_jet_backward``, so the gradient is differentiable once (enough for the parameter
gradient of a loss on the jet; nested derivatives of the jet take the layer's autograd path).

Layouts (batch last, as the kernels want them): h (in, batch) the layer's inputs; F (dim, in, batch)
their first partials in the network's inputs; S (pairs, in, batch) or None the carried second partials;
Q (in, cells + 1, k + 2, out) the cell polynomials (:meth:`kanpde.models.kan.KANLayer.cell_coefficients`);
lo, step (in,) the uniform grids, knots (in, cells + 1) the free knots or None; ``pair_a``, ``pair_b`` the
carried pairs.  Outputs: value (out, batch), first (dim, out, batch), second (pairs, out, batch).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from kanpde.models import native
from kanpde.models.basis import bspline_cells, power_derivatives
from kanpde.models.jet import silu_derivatives
from kanpde.models.knots import knot_cells

Tensor = torch.Tensor


def cell_features(x: Tensor, xi: Tensor, k: int, order: int) -> Tensor:
    """x, xi: (batch, in) the inputs and their offsets from their cells' left knots -> (batch, in, order + 1, k + 2):
    the d-th derivatives of xi**p (p = 0..k) and of silu(x) (last), what a cell's coefficients Q[i, c, :, o] multiply."""
    return torch.cat([power_derivatives(xi, k, order), silu_derivatives(x, order).unsqueeze(-1)], dim=-1)


def _features(h: Tensor, Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
              order: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each point's row of Q.flatten(0, 1) (batch, in), its :func:`cell_features` (differentiable in h), and the
    edges' derivatives R (batch, in, order + 1, out) = features @ its cell's coefficients."""
    x = h.t()
    if knots is None:
        lo, step = lo.to(h.dtype), step.to(h.dtype)
        cell, t = bspline_cells(x, lo, step, Q.shape[1] - 1 - 2 * k, k)
        xi = t * step
    else:
        cell, xi = knot_cells(x, knots.to(h.dtype))
    xi = torch.where(cell == Q.shape[1] - 1, 0, xi)  # outside the knots (only silu there): 0, as in the kernels
    rows = cell + Q.shape[1] * torch.arange(Q.shape[0], device=h.device)
    X = cell_features(x, xi, k, order)
    return rows, X, X @ Q.flatten(0, 1)[rows]


def reference(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
              pair_a: list[int], pair_b: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """The operator by torch operations (the fallback, and what the kernels are tested against)."""
    E = _features(h, Q, lo, step, knots, k, 2 if pair_a else 1)[2].unbind(2)  # each (batch, in, out)
    value = E[0].sum(1).t()
    first = torch.einsum("dib,bio->dob", F, E[1])
    if not pair_a:
        return value, first, h.new_zeros(0, *value.shape)
    second = torch.einsum("pib,bio->pob", F[pair_a] * F[pair_b], E[2])
    if S is not None:
        second = second + torch.einsum("pib,bio->pob", S, E[1])
    return value, first, second


def reference_backward(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor],
                       k: int, pair_a: list[int], pair_b: list[int], g_value: Optional[Tensor], g_first: Optional[Tensor],
                       g_second: Optional[Tensor], need_input: bool) -> tuple[Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """The gradients of a loss given its gradients ``g_*`` (None: zero) of :func:`reference`'s outputs, by torch
    operations written out (an operator's implementation runs below autograd): dQ, and dh, dF, dS where
    ``need_input`` (dS only where S is given), else None."""
    rows, X, R = _features(h, Q, lo, step, knots, k, 3 if need_input else 2)
    E = R.unbind(2)  # each (batch, in, out)
    zero = torch.zeros_like(E[0])
    has_pairs = bool(pair_a) and g_second is not None
    # the loss's gradient with respect to each edge's E0, E1, E2
    g0 = zero if g_value is None else zero + g_value.t().unsqueeze(1)
    g1 = zero if g_first is None else torch.einsum("dob,dib->bio", g_first, F)
    g2 = zero
    if has_pairs:
        g2 = torch.einsum("pob,pib->bio", g_second, F[pair_a] * F[pair_b])
        if S is not None:
            g1 = g1 + torch.einsum("pob,pib->bio", g_second, S)
    # dE_d/dQ[:, p] = X[:, d, p]: each point's share, summed into its cell
    per_point = torch.einsum("bidp,bido->bipo", X[:, :, :3], torch.stack([g0, g1, g2], dim=2))
    dQ = Q.new_zeros(Q.shape[0] * Q.shape[1], k + 2, Q.shape[3])
    dQ = dQ.index_add_(0, rows.flatten(), per_point.flatten(0, 1)).view(Q.shape)
    if not need_input:
        return dQ, None, None, None
    dh = (g0 * E[1] + g1 * E[2] + g2 * E[3]).sum(2).t()
    dF = h.new_zeros(F.shape) if g_first is None else torch.einsum("dob,bio->dib", g_first, E[1])
    dS = None
    if has_pairs:
        w = torch.einsum("pob,bio->pib", g_second, E[2])
        dF = dF.index_add(0, torch.tensor(pair_a, device=h.device), w * F[pair_b])
        dF = dF.index_add(0, torch.tensor(pair_b, device=h.device), w * F[pair_a])
    if S is not None:
        dS = h.new_zeros(S.shape) if not has_pairs else torch.einsum("pob,bio->pib", g_second, E[1])
    return dQ, dh, dF, dS


def _empty(like: Tensor) -> Tensor:
    return like.new_empty(0)


def _reference_out(*args) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(t.contiguous() for t in reference(*args))  # type: ignore[return-value]


def _native_takes(h: Tensor, Q: Tensor, k: int) -> bool:
    return k <= native.MAX_K and Q.dtype == h.dtype and native.library(h.dtype) is not None


def _cpu_forward(*args):
    h, Q, k = args[0], args[3], args[7]
    return native.forward(*args) if _native_takes(h, Q, k) else _reference_out(*args)


def _cpu_backward(*args):
    h, Q, k = args[0], args[3], args[7]
    return native.backward(*args) if _native_takes(h, Q, k) else reference_backward(*args)


def _cuda_forward(*args):
    from kanpde.models import triton_jet

    out = triton_jet.attempt(triton_jet.forward, *args)
    return out if out is not None else _reference_out(*args)


def _cuda_backward(*args):
    from kanpde.models import triton_jet

    out = triton_jet.attempt(triton_jet.backward, *args)
    return out if out is not None else reference_backward(*args)


IMPLEMENTATIONS = {"cpu": (_cpu_forward, _cpu_backward), "cuda": (_cuda_forward, _cuda_backward)}
"""Device type -> (forward, backward): the kernels, each falling back to torch operations where it cannot run."""


def _implementation(device: torch.device):
    return IMPLEMENTATIONS.get(device.type, (_reference_out, reference_backward))


# ---- the registered operators: what torch.compile sees ----

@torch.library.custom_op("kanpde::layer_jet", mutates_args=())
def _layer_jet(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
               pair_a: list[int], pair_b: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    return _reference_out(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)


@torch.library.custom_op("kanpde::layer_jet_backward", mutates_args=())
def _layer_jet_backward(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor],
                        k: int, pair_a: list[int], pair_b: list[int], g_value: Optional[Tensor], g_first: Optional[Tensor],
                        g_second: Optional[Tensor], need_input: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dQ, dh, dF, dS (empty where not computed: an operator returns tensors, not None)."""
    return _filled(h, reference_backward(h, F, S, Q, lo, step, knots, k, pair_a, pair_b, g_value, g_first, g_second, need_input))


def _filled(h: Tensor, grads: tuple[Tensor, Optional[Tensor], Optional[Tensor], Optional[Tensor]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(_empty(h) if g is None else g.contiguous() for g in grads)  # type: ignore[return-value]


for _device, (_forward, _backward) in IMPLEMENTATIONS.items():
    _layer_jet.register_kernel(_device)(_forward)
    _layer_jet_backward.register_kernel(_device)(lambda *args, _backward=_backward: _filled(args[0], _backward(*args)))


@_layer_jet.register_fake
def _layer_jet_fake(h, F, S, Q, lo, step, knots, k, pair_a, pair_b):
    n_out, n_batch = Q.shape[3], h.shape[1]
    return h.new_empty(n_out, n_batch), h.new_empty(F.shape[0], n_out, n_batch), h.new_empty(len(pair_a), n_out, n_batch)


@_layer_jet_backward.register_fake
def _layer_jet_backward_fake(h, F, S, Q, lo, step, knots, k, pair_a, pair_b, g_value, g_first, g_second, need_input):
    dQ = Q.new_empty(Q.shape)
    if not need_input:
        return dQ, _empty(h), _empty(h), _empty(h)
    return dQ, h.new_empty(h.shape), h.new_empty(F.shape), _empty(h) if S is None else h.new_empty(S.shape)


def _setup_context(ctx, inputs, output) -> None:
    h, F, S, Q, lo, step, knots, k, pair_a, pair_b = inputs
    ctx.save_for_backward(h, F, S, Q, lo, step, knots)
    ctx.k, ctx.pair_a, ctx.pair_b = k, pair_a, pair_b


def _op_backward(ctx, g_value, g_first, g_second):
    h, F, S, Q, lo, step, knots = ctx.saved_tensors
    need_input = any(ctx.needs_input_grad[:3])
    dQ, dh, dF, dS = torch.ops.kanpde.layer_jet_backward(h, F, S, Q, lo, step, knots, ctx.k, ctx.pair_a, ctx.pair_b,
                                                         g_value, g_first, g_second, need_input)
    return _input_grads(ctx, dh, dF, dS) + (dQ, None, None, None, None, None, None)


def _input_grads(ctx, dh, dF, dS) -> tuple:
    if not any(ctx.needs_input_grad[:3]):
        return None, None, None
    return dh, dF, dS if ctx.needs_input_grad[2] else None


_layer_jet.register_autograd(_op_backward, setup_context=_setup_context)


class _EagerJet(torch.autograd.Function):
    """The operator's implementations called straight, outside ``torch.compile``: the dispatcher's Python
    layers cost about 0.4 ms per forward and backward (measured on a tiny batch, 2-core CPU), a tenth
    of a KAN [2,10,1] training step at N = 10k."""

    @staticmethod
    def forward(ctx, h, F, S, Q, lo, step, knots, k, pair_a, pair_b):  # type: ignore[override]
        ctx.save_for_backward(h, F, S, Q, lo, step, knots)
        ctx.k, ctx.pair_a, ctx.pair_b = k, pair_a, pair_b
        return _implementation(h.device)[0](h, F, S, Q, lo, step, knots, k, pair_a, pair_b)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_value, g_first, g_second):  # type: ignore[override]
        h, F, S, Q, lo, step, knots = ctx.saved_tensors
        need_input = any(ctx.needs_input_grad[:3])
        dQ, dh, dF, dS = _implementation(h.device)[1](h, F, S, Q, lo, step, knots, ctx.k, ctx.pair_a, ctx.pair_b,
                                                      g_value, g_first, g_second, need_input)
        return _input_grads(ctx, dh, dF, dS) + (dQ, None, None, None, None, None, None)


def layer_jet(h: Tensor, F: Tensor, S: Optional[Tensor], Q: Tensor, lo: Tensor, step: Tensor, knots: Optional[Tensor], k: int,
              pairs: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor, Tensor]:
    """A B-spline KAN layer applied to a jet (layouts in the module's docstring): value (out, batch), first
    (dim, out, batch), second (pairs, out, batch).  Differentiable once in h, F, S and Q.

    Under ``torch.compile`` this is the registered operator ``torch.ops.kanpde.layer_jet``; in eager mode
    the same implementations are called without the dispatcher (:class:`_EagerJet`)."""
    pair_a, pair_b = [a for a, _ in pairs], [b for _, b in pairs]
    if torch.compiler.is_compiling():
        return torch.ops.kanpde.layer_jet(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)
    return _EagerJet.apply(h, F, S, Q, lo, step, knots, k, pair_a, pair_b)


def applies(x: Tensor, k: int) -> bool:
    """Whether a fast implementation serves tensors like x at degree k: the CPU kernel on the CPU, the Triton
    kernels on CUDA.  Elsewhere the layer keeps its own torch operations (cheaper than :func:`reference`'s
    written-out backward).  Under ``torch.compile`` the answer is taken once, when the graph is traced."""
    if k > native.MAX_K:
        return False
    if torch.compiler.is_compiling():
        return _fast_when_traced(x.device.type, x.dtype)
    return _fast(x.device.type, x.dtype)


def _fast(device_type: str, dtype: torch.dtype) -> bool:
    if not native.enabled():  # KANPDE_NATIVE=0 or native.switched(False): every kernel off, torch operations
        return False
    if device_type == "cpu":
        return native.library(dtype) is not None
    if device_type == "cuda":
        from kanpde.models import triton_jet

        return triton_jet.usable(dtype)
    return False


def _fast_when_traced(device_type: str, dtype: torch.dtype) -> bool:
    return _fast(device_type, dtype)


# What torch.compiler.assume_constant_result(_fast_when_traced) does, without importing torch._dynamo (and with
# it Triton: 1.9 s) into every process that imports kanpde: dynamo calls the function instead of tracing its locks
# and environment reads.  tests/models/test_layer_op.py compiles with fullgraph=True, so a change in torch shows.
_fast_when_traced._dynamo_marked_constant = True  # type: ignore[attr-defined]
