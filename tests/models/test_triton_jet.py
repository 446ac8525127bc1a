"""The Triton kernels of the KAN layer's jet (kanpde/models/triton_kernels.py) against torch operations.

Without a GPU they run on CPU tensors in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 before
Triton is imported); with one, on the GPU, compiled.  float64 to 1e-10, float32 to 1e-5, relative to the largest
entry; points on knots, outside the grid and NaN; several widths, grids, degrees, carried pairs, free knots."""
import warnings

import pytest
import torch

from kanpde import KAN
from kanpde.models import layer_op, triton_jet
from kanpde.models.jet import all_pairs
from conftest import kernel_jet_and_grads
from test_layer_op import layer_inputs, rel

if not triton_jet.installed():
    pytest.skip("Triton is not installed (pip install triton; it ships with torch's CUDA builds on Linux)", allow_module_level=True)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not triton_jet.interpreting():
    pytest.skip("no GPU, and Triton was imported without TRITON_INTERPRET=1", allow_module_level=True)

TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
CASES = [
    dict(),
    dict(free=True),
    dict(carry_S=False, n_in=2, n_out=5, grid=3, k=1),
    dict(pairs=((0, 0), (1, 1)), n_dim=2, n_in=4, n_out=1, grid=7, k=2),
    dict(pairs=((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)), n_dim=3, n_in=2, n_out=3, free=True, k=4),
    dict(pairs=(), n_dim=1, n_out=8, grid=12),
    dict(pairs=(), n_dim=0, n_in=3, n_out=1, k=1, free=True),  # plain evaluation
]
IDS = ["default", "free knots", "no S, k=1", "diagonal pairs, k=2", "3 dims, all pairs, free, k=4", "first only, G=12", "value only"]


def on_device(args):
    return tuple(a.to(DEVICE) if isinstance(a, torch.Tensor) else a for a in args)


F32_CASES = ("default", "free knots", "3 dims, all pairs, free, k=4")  # float32: the dtype's plumbing and tolerance


@pytest.mark.parametrize("case,dtype", [pytest.param(c, torch.float64, id=f"{i}-f64") for c, i in zip(CASES, IDS)]
                         + [pytest.param(c, torch.float32, id=f"{i}-f32") for c, i in zip(CASES, IDS) if i in F32_CASES])
def test_triton_kernels_match_torch_operations(case, dtype):
    args = on_device(layer_inputs(**case, n=150, dtype=dtype))
    args[0][1, 3] = float("nan")  # NaN counts as outside, as in the CPU kernel
    got = triton_jet.forward(*args)
    want = layer_op.reference(*args)
    grads = [torch.randn_like(w) for w in want]
    for g, w in zip(got, want):
        assert g.dtype == dtype and rel(g.nan_to_num(), w.nan_to_num()) <= TOL[dtype]
        assert torch.equal(g.isnan(), w.isnan())
    for need_input in (True, False):
        got_grads = triton_jet.backward(*args, *grads, need_input)
        want_grads = layer_op.reference_backward(*args, *grads, need_input)
        for g, w in zip(got_grads, want_grads):
            assert (g is None) == (w is None)
            if w is not None:
                assert rel(g.nan_to_num(), w.nan_to_num()) <= TOL[dtype]
    # gradients of some outputs only (the others None: zero)
    partial = triton_jet.backward(*args, grads[0], None, None, True)
    ref = layer_op.reference_backward(*args, grads[0], None, None, True)
    for g, w in zip(partial, ref):
        if w is not None:
            assert rel(g.nan_to_num(), w.nan_to_num()) <= TOL[dtype]


@pytest.mark.parametrize("width,grid,k", [([2, 5, 1], 5, 3), ([3, 4, 2], 6, 2)])
def test_a_kan_with_the_triton_kernels_trains_like_the_torch_operations(monkeypatch, width, grid, k):
    """The whole model (the first layer's broadcast input partials included) with the operator's implementation
    swapped for the Triton kernels: its jet and the parameter gradients of a loss on it equal the torch path's."""
    torch.manual_seed(2)
    model = KAN(width, grid=grid, k=k, init_scale=0.5).double().to(DEVICE)
    model.layers[-1].insert_knots(torch.tensor([[0.3]] * width[-2], dtype=torch.float64))
    x = (2.6 * torch.rand(200, width[0], dtype=torch.float64) - 1.3).to(DEVICE)
    pairs = all_pairs(width[0], True)
    ref, ref_grads, _ = kernel_jet_and_grads(model, x, pairs, kernel=False)
    monkeypatch.setitem(layer_op.IMPLEMENTATIONS, DEVICE, (triton_jet.forward, triton_jet.backward))
    monkeypatch.setattr(layer_op, "applies", lambda x, k: True)
    got, got_grads, calls = kernel_jet_and_grads(model, x, pairs, kernel=True)
    assert calls == len(model.layers)
    for a, b in zip(got, ref):
        assert rel(a, b) <= 1e-10
    for name in ref_grads:
        assert rel(got_grads[name], ref_grads[name]) <= 1e-10


def test_a_failing_triton_kernel_warns_once_and_falls_back(monkeypatch):
    """A Triton that fails to compile on the user's GPU: one warning naming the error, torch operations from then on."""
    monkeypatch.setattr(triton_jet, "_failure", [])

    def broken(*args):
        raise RuntimeError("PTX assembly failed: sm_00 is not supported")

    monkeypatch.setattr(triton_jet, "forward", broken)
    monkeypatch.setattr(triton_jet, "backward", broken)
    args = layer_inputs()
    with pytest.warns(RuntimeWarning, match="Triton kernel of the KAN layer failed.*sm_00 is not supported"):
        out = layer_op.IMPLEMENTATIONS["cuda"][0](*args)  # the CUDA implementation, on CPU tensors here
    for a, b in zip(out, layer_op.reference(*args)):
        assert rel(a, b) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        grads = layer_op.IMPLEMENTATIONS["cuda"][1](*args, *(torch.ones_like(o) for o in out), True)
    assert rel(grads[0], layer_op.reference_backward(*args, *(torch.ones_like(o) for o in out), True)[0]) == 0
    assert not triton_jet.usable(torch.float32)


def test_cpu_tensors_outside_the_interpreter_get_a_clear_error(monkeypatch):
    monkeypatch.setattr(triton_jet, "interpreting", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        triton_jet.forward(*layer_inputs())
