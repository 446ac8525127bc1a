"""The compiled CPU kernel of a B-spline KAN layer's jet (kanpde/models/layer_jet.c) against the
torch operations it replaces, and what happens where it cannot be built."""
import warnings

import pytest
import torch

from kanpde import KAN
from kanpde.models.jet import all_pairs
from kanpde.models import layer_op, native
from conftest import kernel_jet_and_grads

F64 = torch.float64

needs_kernel = pytest.mark.skipif(native.library(F64) is None, reason="no C compiler: the kernel cannot be built here")


def points(dim: int, n: int, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
    """Random points in [-1.3, 1.3]^dim (some outside the first layer's grid), then the knots of a
    G = 5 grid on [-1, 1] themselves and points far outside, in the first input."""
    gen = torch.Generator().manual_seed(seed)
    x = 2.6 * torch.rand(n, dim, generator=gen, dtype=F64) - 1.3
    special = torch.cat([torch.linspace(-1, 1, 6, dtype=F64), torch.tensor([2.5, -3.0], dtype=F64)])
    x[: len(special), 0] = special
    return x.to(dtype)


def jet_and_grads(model: KAN, x: torch.Tensor, pairs, kernel: bool):
    """:func:`conftest.kernel_jet_and_grads` with the gradients in the order of ``model.parameters()``."""
    parts, grads, calls = kernel_jet_and_grads(model, x, pairs, kernel)
    return parts, list(grads.values()), calls


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


@needs_kernel
@pytest.mark.parametrize("width", [[2, 1], [2, 4, 1], [3, 3, 2], [2, 5, 3, 2], [1, 4, 4, 1]])
@pytest.mark.parametrize("grid,k", [(5, 3), (3, 1), (7, 2), (4, 4)])
@pytest.mark.parametrize("mixed", [False, True])
def test_kernel_matches_torch_operations_in_float64(width, grid, k, mixed):
    torch.manual_seed(3)
    model = KAN(width, grid=grid, k=k, init_scale=0.5).double()
    x = points(width[0], 300)
    pairs = all_pairs(width[0], mixed)
    fast, fast_grads, calls = jet_and_grads(model, x, pairs, kernel=True)
    ref, ref_grads, ref_calls = jet_and_grads(model, x, pairs, kernel=False)
    assert calls == len(model.layers) and ref_calls == 0
    for a, b in zip(fast, ref):
        assert rel(a, b) <= 1e-12
    for a, b in zip(fast_grads, ref_grads):
        assert rel(a, b) <= 1e-12


@needs_kernel
def test_kernel_matches_torch_operations_in_float32():
    torch.manual_seed(4)
    model = KAN([2, 6, 3, 1], grid=5, k=3, init_scale=0.5).float()
    x = points(2, 2000, torch.float32)
    fast, fast_grads, calls = jet_and_grads(model, x, all_pairs(2, True), kernel=True)
    ref, ref_grads, _ = jet_and_grads(model, x, all_pairs(2, True), kernel=False)
    assert calls == 3
    for a, b in zip(fast + fast_grads, ref + ref_grads):
        assert rel(a, b) <= 1e-5


@needs_kernel
def test_kernel_gives_the_same_result_on_one_thread_and_on_several():
    threads = torch.get_num_threads()
    torch.manual_seed(5)
    model = KAN([2, 5, 1], grid=5, k=3).double()
    x = points(2, 5000)  # enough points for the kernel to split them (1024 per thread at least)
    try:
        torch.set_num_threads(1)
        one, one_grads, _ = jet_and_grads(model, x, all_pairs(2, False), kernel=True)
        torch.set_num_threads(3)
        many, many_grads, _ = jet_and_grads(model, x, all_pairs(2, False), kernel=True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one + one_grads, many + many_grads):
        assert rel(a, b) <= 1e-13


@needs_kernel
def test_kernel_takes_the_gradient_to_earlier_layers_jets():
    """torch.autograd.gradcheck of the kernel's backward (inputs h, F, S and the cell polynomials Q)."""
    torch.manual_seed(6)
    n_in, n_out, k, n = 3, 2, 3, 40
    layer = KAN([n_in, n_out], grid=4, k=k).layers[0].double()
    h = (2.4 * torch.rand(n_in, n, dtype=F64) - 1.2).requires_grad_()
    F = torch.randn(2, n_in, n, dtype=F64, requires_grad=True)
    S = torch.randn(3, n_in, n, dtype=F64, requires_grad=True)
    Q = layer.cell_coefficients().detach().requires_grad_()
    pairs = ((0, 0), (0, 1), (1, 1))

    def f(h, F, S, Q):
        return layer_op.layer_jet(h, F, S, Q, layer.grid_lo, layer.grid_h, None, k, pairs)

    assert torch.autograd.gradcheck(f, (h, F, S, Q), eps=1e-6, atol=1e-7)


def test_without_a_compiler_layers_keep_torch_operations(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_libraries", {})
    torch.manual_seed(7)
    model = KAN([2, 3, 1], grid=5, k=3).double()
    x = points(2, 100)
    with pytest.warns(RuntimeWarning, match="could not build the KAN layer kernel layer_jet.c"):
        assert native.library(F64) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not on every call
        got, _, calls = jet_and_grads(model, x, all_pairs(2, False), kernel=True)
    assert calls == 0
    with torch.no_grad():  # the value still right: the plain forward pass
        assert rel(got[0], model(x)) <= 1e-12


def test_kanpde_native_0_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv("KANPDE_NATIVE", "0")
    assert not native.enabled() and native.library(F64) is None
    with native.switched(True):
        assert native.enabled()
    model = KAN([2, 3, 1]).double()
    _, _, calls = jet_and_grads(model, points(2, 50), all_pairs(2, False), kernel=False)
    assert calls == 0


def test_kernel_refuses_a_degree_it_was_not_built_for():
    layer = KAN([1, 1], grid=3, k=native.MAX_K + 1).layers[0].double()
    h = torch.zeros(1, 4, dtype=F64)
    with pytest.raises(ValueError, match=f"spline degrees up to {native.MAX_K}, got k={native.MAX_K + 1}"):
        native.forward(h, torch.ones(1, 1, 4, dtype=F64), None, layer.cell_coefficients(), layer.grid_lo, layer.grid_h, None,
                       layer.k, [], [])
    # the operator takes that degree by torch operations, and the layer keeps its own torch path
    Q = layer.cell_coefficients()
    value = layer_op.layer_jet(h, h.new_zeros(0, 1, 4), None, Q, layer.grid_lo, layer.grid_h, None, layer.k, ())[0]
    assert not layer.kernel_applies(h) and rel(value, layer(h.t()).t()) <= 1e-12


@needs_kernel
def test_a_backward_after_the_kernel_is_switched_off_gives_the_same_gradients():
    """The backward operator runs where it is called: switched off by then, it takes torch operations."""
    torch.manual_seed(8)
    model = KAN([2, 4, 1], grid=5, k=3).double()
    x = points(2, 200)
    ref, ref_grads, _ = jet_and_grads(model, x, all_pairs(2, False), kernel=True)
    model.zero_grad(set_to_none=True)
    with native.switched(True):
        jet = model.forward_jet(x, all_pairs(2, False))
    with native.switched(False):
        sum((p * (j + 1)).square().mean() for j, p in enumerate([jet.value, jet.first, jet.second])).backward()
    for a, b in zip([p.grad for p in model.parameters()], ref_grads):
        assert rel(a, b) <= 1e-12


def test_kernels_load_only_from_a_private_directory(monkeypatch, tmp_path):
    """A cache other users can write to is not used: the kernel is built into a fresh private directory."""
    shared = tmp_path / "shared"
    (shared / "kernels").mkdir(parents=True)
    (shared / "kernels").chmod(0o777)
    monkeypatch.setenv("KANPDE_CACHE", str(shared))
    monkeypatch.setattr(native, "_libraries", {})
    with pytest.warns(RuntimeWarning, match="not private"):
        where = native.cache_dir()
    assert where != shared / "kernels" and native.private(where) and (where.stat().st_mode & 0o777) == 0o700


def test_a_library_that_does_not_match_its_hash_is_rebuilt(monkeypatch, tmp_path):
    if native.compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path))
    flags = [*native.FLAGS, "-DREAL=double"]
    built = native._build(native.compiler(), flags, native.cache_dir(), "double")
    assert (tmp_path / "kernels").stat().st_mode & 0o777 == 0o700
    original = built.read_bytes()
    built.write_bytes(b"planted")  # what another hand could leave there: not loaded, rebuilt from the source
    again = native._build(native.compiler(), flags, native.cache_dir(), "double")
    assert again == built and again.read_bytes() == original


@pytest.mark.parametrize("grid", [5, 60])
def test_plain_evaluation_by_the_kernel_matches_the_dense_basis(grid):
    """model(x) on the CPU runs each layer's cell polynomials through the kernel (cost flat in G); values and
    parameter gradients equal the dense padded basis of the torch operations, also with a symbolic edge and
    points outside the grids."""
    if not native.available(torch.zeros(1, dtype=F64)):
        pytest.skip("the KAN layer kernel is not available here")
    torch.manual_seed(3)
    model = KAN([2, 4, 3], grid=grid, init_scale=0.5).double()
    model.layers[1].fix_symbolic(2, 0, "sin", (1.0, 0.2, 0.5, 0.1))
    x = torch.rand(300, 2, dtype=F64) * 2.6 - 1.3
    results = []
    for kernel in (True, False):
        model.zero_grad(set_to_none=True)
        with native.switched(kernel):
            y = model(x)
        (y * torch.arange(1, 4, dtype=F64)).square().sum().backward()
        results.append((y.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (y_k, g_k), (y_t, g_t) = results
    torch.testing.assert_close(y_k, y_t, rtol=1e-12, atol=1e-13)
    assert len(g_k) == len(g_t)
    for a, b in zip(g_k, g_t):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    calls = []
    apply = layer_op.layer_jet
    layer_op.layer_jet = lambda *args: calls.append(1) or apply(*args)
    try:
        model(x)
        model(x.clone().requires_grad_(True))  # a graph to x for nested autograd: the torch operations
    finally:
        layer_op.layer_jet = apply
    assert len(calls) == 2  # both layers by the kernel once, none with a graph to x
