"""The registered operator kanpde::layer_jet (kanpde/models/layer_op.py): its torch-operation fallback against
autograd, its registration (torch.library.opcheck), and a model under torch.compile(fullgraph=True) that keeps it."""
import pytest
import torch

from kanpde import KAN
from kanpde.models import layer_op, native
from kanpde.models.jet import all_pairs
from conftest import jet_loss

F64 = torch.float64


def layer_inputs(n_in=3, n_out=2, grid=4, k=3, n=40, n_dim=2, pairs=((0, 0), (0, 1), (1, 1)), carry_S=True, free=False,
                 dtype=F64, seed=0):
    """A layer's operator arguments: h (some points on knots, outside the grid and NaN-free), F, S, Q, lo, step, knots."""
    torch.manual_seed(seed)
    layer = KAN([n_in, n_out], grid=grid, k=k, init_scale=0.5).layers[0].double()
    if free:
        layer.insert_knots(torch.tensor([[0.13, 0.41]] * n_in, dtype=F64))
    h = 2.8 * torch.rand(n_in, n, dtype=F64) - 1.4
    h[0, : grid + 1] = torch.linspace(-1, 1, grid + 1, dtype=F64)  # on the knots
    h[-1, 0], h[-1, 1] = 7.0, -6.0  # far outside
    F = torch.randn(n_dim, n_in, n, dtype=F64)
    S = torch.randn(len(pairs), n_in, n, dtype=F64) if carry_S and pairs else None
    Q = layer.cell_coefficients().detach()
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return (cast(h), cast(F), cast(S), cast(Q), cast(layer.grid_lo), cast(layer.grid_h), cast(layer.knots), k,
            [a for a, _ in pairs], [b for _, b in pairs])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference relative to b's largest entry (0 for two empty tensors of one shape)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    if not b.numel():
        return 0.0
    return ((a - b).abs().max().double() / b.abs().max().double().clamp_min(1e-300)).item()


CASES = [dict(), dict(free=True), dict(carry_S=False), dict(pairs=()), dict(pairs=((1, 1),), n_dim=3, n_in=1, n_out=4, k=2),
         dict(n_dim=0, pairs=(), grid=7, k=1)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_fallback_backward_equals_autograd_of_the_fallback_forward(case):
    """reference_backward (written out: an operator runs below autograd) against torch.autograd on reference."""
    args = layer_inputs(**case)
    h, F, S, Q = (None if t is None else t.clone().requires_grad_() for t in args[:4])
    outs = layer_op.reference(h, F, S, Q, *args[4:])
    grads = [torch.randn_like(o) for o in outs]
    wrt = [t for t in (Q, h, F, S) if t is not None]
    used = [(o, g) for o, g in zip(outs, grads) if o.requires_grad]  # no second partials: an empty constant
    want = torch.autograd.grad([o for o, _ in used], wrt, [g for _, g in used], allow_unused=True)
    got = layer_op.reference_backward(*args, *grads, True)
    for w, g, t in zip(want, got, wrt):
        assert rel(g, torch.zeros_like(t) if w is None else w) <= 1e-12
    only_q = layer_op.reference_backward(*args, *grads, False)
    assert only_q[1:] == (None, None, None) and rel(only_q[0], want[0]) <= 1e-12


@pytest.mark.parametrize("case", CASES[:3], ids=["uniform", "free knots", "no S"])
def test_registered_operator_passes_opcheck_and_matches_the_fallback(case):
    """torch.library.opcheck: schema, autograd registration, fake (meta) implementation, AOT dispatch; then the
    operator's CPU implementation (the C kernel where it builds) against torch operations, values and gradients."""
    args = layer_inputs(**case)
    h, F, S, Q = (None if t is None else t.clone().requires_grad_() for t in args[:4])
    h.data[0, :5] += 1e-3  # off the knots: finite differences in opcheck's gradient test do not cross a knot
    full = (h, F, S, Q, *args[4:])
    torch.library.opcheck(torch.ops.kanpde.layer_jet.default, full)
    outs = torch.ops.kanpde.layer_jet(*full)
    ref = layer_op.reference(*full)
    grads = [torch.randn_like(o) for o in outs]
    wrt = [t for t in (h, F, S, Q) if t is not None]
    for got, want in zip(torch.autograd.grad(outs, wrt, grads), torch.autograd.grad(ref, wrt, grads)):
        assert rel(got, want) <= 1e-12
    for a, b in zip(outs, ref):
        assert rel(a, b) <= 1e-12


@pytest.mark.slow
def test_compiled_model_keeps_the_operator_without_graph_breaks(monkeypatch):
    """torch.compile(fullgraph=True) of a loss on a KAN's jet and plain evaluation: it traces without a graph break
    (fullgraph raises on one), its graph holds kanpde::layer_jet, the kernel runs, and loss and gradients are eager's."""
    if native.library(F64) is None:
        pytest.skip("no C compiler: the CPU kernel cannot be built here")
    torch.manual_seed(1)
    model = KAN([2, 4, 1], grid=5, init_scale=0.5).double()
    model.layers[1].insert_knots(torch.tensor([[0.2]] * 4, dtype=F64))  # one layer on free knots
    x = 2.4 * torch.rand(300, 2, dtype=F64) - 1.2
    pairs = all_pairs(2, True)

    def loss(x):
        jet = model.forward_jet(x, pairs)
        return jet_loss([jet.value, jet.first, jet.second]) + model(x[:50]).square().mean()

    targets = []

    def recording(gm, example_inputs):
        targets.extend(str(node.target) for node in gm.graph.nodes)
        return gm.forward

    results = []
    forward = native.forward
    for fn in (torch.compile(loss, fullgraph=True, backend=recording), loss):
        calls = []
        monkeypatch.setattr(native, "forward", lambda *a: calls.append(1) or forward(*a))
        model.zero_grad(set_to_none=True)
        value = fn(x)
        value.backward()
        results.append((value.detach(), [p.grad.clone() for p in model.parameters()], len(calls)))
    (c_loss, c_grads, c_calls), (e_loss, e_grads, e_calls) = results
    assert sum("kanpde.layer_jet" in t for t in targets) == 4  # two layers, jet and plain evaluation
    assert c_calls == e_calls == 4
    assert rel(c_loss, e_loss) <= 1e-13
    for a, b in zip(c_grads, e_grads):
        assert rel(a, b) <= 1e-12


@pytest.mark.slow
def test_importing_kanpde_leaves_torch_compile_and_triton_unimported():
    """Every run, test and sweep job imports kanpde: dynamo and Triton (about 2 s) load only when used."""
    import subprocess
    import sys

    probe = "import sys, kanpde, kanpde.models.kan; print('torch._dynamo' in sys.modules, 'triton' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["False", "False"], proc.stderr
