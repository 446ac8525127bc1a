"""B-splines on free (non-uniform) knots (kanpde/models/knots.py) and the KAN layers that use them.

The references are independent of the code under test: the Cox–de Boor recursion
(:func:`cox_de_boor_basis`) for values, the textbook derivative of a spline (a degree-lower spline on
the same knots) for derivatives, nested autograd through a Cox–de Boor forward pass for a network's
partials, and least squares on dense samples for exact knot changes.
"""
import copy
import io

import pytest
import torch
from torch.nn import functional as F

from kanpde.models import KAN, KANLayer, native
from kanpde.models.basis import cox_de_boor_basis
from kanpde.models.knots import (check_knots, cover, extend_knots, insert_knots, knot_basis, subdivision,
                                 uniform_knots)

from conftest import jet_loss, kernel_jet_and_grads

F64 = torch.float64
PAIRS = ((0, 0), (0, 1), (1, 1))

needs_kernel = pytest.mark.skipif(not native.available(torch.zeros(1, dtype=F64)),
                                  reason="no C compiler: the kernel cannot be built here")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def random_knots(n_in: int, G: int, k: int, lo: float, hi: float, seed: int) -> torch.Tensor:
    """(n_in, G + 2k + 1) strictly increasing knots from lo to hi with gaps varying by a factor of up to 5."""
    gen = torch.Generator().manual_seed(seed)
    gaps = 0.25 + torch.rand(n_in, G + 2 * k, generator=gen, dtype=F64)
    t = torch.cat([torch.zeros(n_in, 1, dtype=F64), gaps.cumsum(1)], dim=1)
    return lo + (hi - lo) * t / t[:, -1:]


def randomize(layer, seed: int, amp: float = 0.5) -> None:
    """Random coefficients and scales (non-trivial silu and spline parts)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.coef.copy_(amp * (2 * torch.rand(layer.coef.shape, generator=gen, dtype=F64) - 1))
        layer.scale_base.copy_(0.5 * (2 * torch.rand(layer.scale_base.shape, generator=gen, dtype=F64) - 1))
        layer.scale_sp.copy_(0.5 + torch.rand(layer.scale_sp.shape, generator=gen, dtype=F64))


def free_model(width, G: int = 5, k: int = 3, seed: int = 0, spans=None) -> KAN:
    """A float64 KAN whose layers all have random non-uniform knots (via set_knots) and random parameters."""
    torch.manual_seed(seed)
    model = KAN(width, grid=G, k=k).double()
    spans = spans or [(-1.7, 1.6)] + [(-1.2, 1.1)] * (len(width) - 2)
    for l, (layer, (lo, hi)) in enumerate(zip(model.layers, spans)):
        layer.set_knots(random_knots(layer.in_features, G, k, lo, hi, seed + 10 * l), layer.coef.detach().clone())
        randomize(layer, seed + 10 * l + 1)
    return model


def reference(model: KAN, x: torch.Tensor) -> torch.Tensor:
    """The network by the Cox–de Boor recursion on each layer's knot vectors: ordinary autograd to any order."""
    h = model.features(x)
    for layer in model.layers:
        t = layer.knot_vector()
        base, sp = layer.scales()
        out = F.silu(h) @ base
        for i in range(layer.in_features):
            out = out + (cox_de_boor_basis(h[:, i], t[i], layer.k) @ layer.coef[i]) * sp[i]
        h = out
    return h


def reference_jet(model: KAN, x: torch.Tensor, pairs):
    """Value (batch, out), first (dim, batch, out), second (pairs, batch, out) of :func:`reference` by nested
    autograd, keeping the graph to the parameters."""
    xg = x.detach().clone().requires_grad_()
    y = reference(model, xg)
    grads = [torch.autograd.grad(y[:, o].sum(), xg, create_graph=True)[0] for o in range(y.shape[1])]  # (batch, dim) each
    first = torch.stack(grads, dim=2).permute(1, 0, 2)
    second = torch.stack([torch.stack([torch.autograd.grad(g[:, a].sum(), xg, create_graph=True)[0][:, b] for g in grads], dim=1)
                          for a, b in pairs])
    return y, first, second


def jet_and_grads(model: KAN, x: torch.Tensor, kernel: bool):
    return kernel_jet_and_grads(model, x, PAIRS, kernel)


def points(n: int, seed: int, spread: float = 1.5, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Random 2-d points in [-spread, spread]², then ``extra`` values in the first input and far-away points."""
    gen = torch.Generator().manual_seed(seed)
    x = spread * (2 * torch.rand(n, 2, generator=gen, dtype=F64) - 1)
    special = torch.tensor([3.0, -2.9, 5.0], dtype=F64)
    if extra is not None:
        special = torch.cat([extra.to(F64), special])
    x[: len(special), 0] = special
    x[len(special) : 2 * len(special), 1] = special
    return x


# --- references for one input's spline on the whole line ---------------------------------------------------------


def spline(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, d: int) -> torch.Tensor:
    """sum_j c[j] B_{j,d}(x) on knots t (zero outside [t_0, t_{n-1})): x (batch,), c (n - d - 1, out) -> (batch, out)."""
    return cox_de_boor_basis(x, t, d) @ c


def derivative_coefficients(t: torch.Tensor, c: torch.Tensor, d: int) -> torch.Tensor:
    """The derivative of the degree-d spline (t, c), extended by zero, as a degree d-1 spline on the same knots:
    c'_j = d (c_j - c_{j-1}) / (t_{j+d} - t_j), j = 0 .. n - d - 1, with c_{-1} = c_{n-d-1} = 0."""
    z = c.new_zeros(1, c.shape[1])
    padded = torch.cat([z, c, z])
    j = torch.arange(len(t) - d)
    return d * (padded[1:] - padded[:-1]) / (t[j + d] - t[j]).unsqueeze(1)


def spline_and_derivatives(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Value, first and second derivative of the spline at x by the reference formulas."""
    c1 = derivative_coefficients(t, c, k)
    c2 = derivative_coefficients(t, c1, k - 1)
    return [spline(x, t, c, k), spline(x, t, c1, k - 1), spline(x, t, c2, k - 2)]


def line(t: torch.Tensor, n: int = 400) -> torch.Tensor:
    """Points covering the whole knot span and beyond it on both sides, plus every knot itself."""
    span = t[-1] - t[0]
    return torch.cat([torch.linspace(float(t[0] - 0.3 * span), float(t[-1] + 0.3 * span), n, dtype=F64), t])


# --------------------------------------------------------------------------------------------------------------------
# 1. the basis on free knots


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_knot_basis_matches_cox_de_boor(k):
    n_in, G = 3, 6
    knots = random_knots(n_in, G, k, -1.0, 2.0, seed=k)
    gen = torch.Generator().manual_seed(100 + k)
    x = -2.0 + 5.0 * torch.rand(300, n_in, generator=gen, dtype=F64)  # inside and outside [t_0, t_{n-1}]
    x = torch.cat([x, knots.t()])  # every knot of every input
    B = knot_basis(x, knots, k)
    assert B.shape == (x.shape[0], n_in, G + k)
    for i in range(n_in):
        ref = cox_de_boor_basis(x[:, i], knots[i], k)
        assert (B[:, i] - ref).abs().max().item() <= 1e-12
        outside = (x[:, i] < knots[i, 0]) | (x[:, i] >= knots[i, -1])
        assert outside.sum() > 20 and bool((B[outside, i] == 0).all())
    # k + 1 live functions that sum to one on the interior
    inner = (x > knots[:, k]) & (x < knots[:, -1 - k])
    assert (B.sum(-1)[inner] - 1).abs().max().item() <= 1e-12


# --------------------------------------------------------------------------------------------------------------------
# 2. values and derivatives of a network on free knots


def kernel_settings() -> list[bool]:
    """Kernel on (where it builds) and off."""
    return [True, False] if native.available(torch.zeros(1, dtype=F64)) else [False]


def test_free_knot_jet_matches_nested_autograd_of_reference():
    model = free_model([2, 4, 3, 1], seed=1)
    x = points(60, seed=2, extra=model.layers[0].knots[0])  # some points exactly on first-layer knots, some far out
    # the hidden layers' inputs reach their padding cells and beyond their knots: every kind of cell is exercised
    seen = model.layer_inputs(x)[1]
    t = model.layers[1].knots
    assert bool(((seen < t[:, 3]) & (seen > t[:, 0])).any()) and bool(((seen > t[:, -1]) | (seen < t[:, 0])).any())
    ref = reference_jet(model, x, PAIRS)
    jet_loss(ref).backward()  # parameter gradients of the same loss through the reference's nested autograd
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        assert rel(model(x), ref[0]) <= 1e-12
    for kernel in kernel_settings():
        parts, grads, calls = jet_and_grads(model, x, kernel)
        assert calls == (len(model.layers) if kernel else 0)
        for a, b in zip(parts, ref):
            assert rel(a, b.detach()) <= 1e-10, kernel
        for name in ref_grads:
            assert rel(grads[name], ref_grads[name]) <= 1e-10, (kernel, name)


@needs_kernel
def test_free_knot_kernel_matches_torch_operations():
    model = free_model([2, 4, 3, 1], seed=3)
    x = points(200, seed=4, extra=model.layers[0].knots[0])
    fast, fast_grads, calls = jet_and_grads(model, x, kernel=True)
    slow, slow_grads, slow_calls = jet_and_grads(model, x, kernel=False)
    assert calls == 3 and slow_calls == 0
    for a, b in zip(fast, slow):
        assert rel(a, b) <= 1e-12
    for name in slow_grads:
        assert rel(fast_grads[name], slow_grads[name]) <= 1e-12, name


def test_free_knot_jet_with_graph_to_input():
    """With x requiring grad the jet keeps its graph to x: its partials match, and differentiate once more."""
    model = free_model([2, 4, 3, 1], seed=5)
    x = points(40, seed=6)
    ref = [r.detach() for r in reference_jet(model, x, PAIRS)]
    xr = x.clone().requires_grad_()  # the reference's third partial d³u/dx0² dx1
    g = torch.autograd.grad(reference(model, xr).sum(), xr, create_graph=True)[0]
    g = torch.autograd.grad(g[:, 0].sum(), xr, create_graph=True)[0]
    ref_third = torch.autograd.grad(g[:, 0].sum(), xr)[0][:, 1]
    xg = x.clone().requires_grad_()
    jet = model.forward_jet(xg, PAIRS)  # torch operations with a graph to x (the kernel differentiates once only)
    for a, b in zip((jet.value, jet.first, jet.second), ref):
        assert rel(a.detach(), b) <= 1e-10
    third = torch.autograd.grad(jet.second[0, :, 0].sum(), xg)[0][:, 1]
    assert rel(third, ref_third) <= 1e-9


def test_free_knot_model_is_twice_differentiable_by_autograd():
    model = free_model([2, 4, 3, 1], seed=7)
    x = points(30, seed=8)
    ref = reference_jet(model, x, PAIRS)
    xg = x.clone().requires_grad_()
    g = torch.autograd.grad(model(xg).sum(), xg, create_graph=True)[0]
    second = torch.autograd.grad(g[:, 0].sum(), xg)[0][:, 0]
    assert rel(second, ref[2][0, :, 0]) <= 1e-10


def test_edge_derivatives_graph_path_matches_default_path():
    layer = free_model([3, 2], seed=9).layers[0]
    t = layer.knots
    gen = torch.Generator().manual_seed(10)
    h = torch.cat([-2.5 + 5 * torch.rand(80, 3, generator=gen, dtype=F64), t.t()])  # padding, outside, on every knot
    fast = layer.edge_derivatives(h, 3)
    h_graph = h.clone().requires_grad_()
    graph = layer.edge_derivatives(h_graph, 3, graph_to_input=True)
    for a, b in zip(fast, graph):
        assert rel(a.detach(), b.detach()) <= 1e-12
    # the graph path's derivative in h of order d is order d + 1
    for d in range(3):
        dd = torch.autograd.grad(graph[d].sum(), h_graph, retain_graph=True)[0]
        assert rel(dd, graph[d + 1].detach().sum(-1)) <= 1e-12
    # gradients to the parameters and to h: the hand-written backward against autograd (order 2: with a
    # gradient to h the default path computes one order more, and silu's derivatives stop at 3)
    h_fast = h.clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    jet_loss(layer.edge_derivatives(h_fast, 2)).backward()
    fast_grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad(set_to_none=True)
    h_graph.grad = None
    jet_loss(layer.edge_derivatives(h_graph, 2, graph_to_input=True)).backward()
    for a, p in zip(fast_grads, layer.parameters()):
        assert rel(a, p.grad) <= 1e-12
    assert rel(h_fast.grad, h_graph.grad) <= 1e-12
    # and the edges themselves against the Cox–de Boor reference
    base, sp = layer.scales()
    for i in range(3):
        ref = F.silu(h[:, i : i + 1]) * base[i] + (cox_de_boor_basis(h[:, i], t[i], layer.k) @ layer.coef[i]) * sp[i]
        assert rel(fast[0][:, i].detach(), ref.detach()) <= 1e-12


# --------------------------------------------------------------------------------------------------------------------
# 3. a uniform layer made free on the same knots


def test_uniform_knots_made_free_compute_the_same(f64):
    torch.manual_seed(11)
    uniform = KAN([2, 4, 1], grid=5, k=3, init_scale=0.5).double()
    for l, layer in enumerate(uniform.layers):
        randomize(layer, 12 + l)
    free = copy.deepcopy(uniform)
    for layer in free.layers:
        layer.set_knots(layer.knot_vector().clone(), layer.coef.detach().clone())
    assert free.free_knots and not uniform.free_knots
    grid_knots = -1 + 0.4 * torch.arange(-3, 9, dtype=F64)  # the uniform grid's knots, padding included
    x = points(100, seed=13, spread=2.5, extra=grid_knots)
    with torch.no_grad():
        assert rel(free(x), uniform(x)) <= 1e-13
    for kernel in ([True, False] if native.available(x) else [False]):
        with native.switched(kernel):
            a, b = uniform.forward_jet(x, PAIRS), free.forward_jet(x, PAIRS)
        for p, q in zip((b.value, b.first, b.second), (a.value, a.first, a.second)):
            assert rel(p.detach(), q.detach()) <= 1e-13
    # a few Adam steps on a small loss of the jet go the same way
    xs = points(50, seed=14, spread=1.3)
    for model in (uniform, free):
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5):
            opt.zero_grad()
            jet = model.forward_jet(xs, PAIRS)
            loss = (jet.value - 0.3).square().mean() + 1e-2 * jet.second.square().mean()
            loss.backward()
            opt.step()
    moved = dict(free.named_parameters())
    for name, p in uniform.named_parameters():
        assert (p - moved[name]).abs().max().item() <= 1e-10, name


# --------------------------------------------------------------------------------------------------------------------
# 4. knot insertion (Boehm) keeps the function on the whole line


@pytest.mark.parametrize("k", [2, 3, 5])
def test_insert_knots_keeps_function_and_derivatives(k):
    G, n_out = 5, 2
    knots = random_knots(2, G, k, -1.0, 1.5, seed=20 + k)
    gen = torch.Generator().manual_seed(30 + k)
    coef = 2 * torch.rand(2, G + k, n_out, generator=gen, dtype=F64) - 1
    # per input: one knot in the left padding cells, one inside, one in the right padding cells
    lo, hi = knots[:, :k + 1], knots[:, -k - 1:]
    left = lo[:, 0] + (lo[:, k] - lo[:, 0]) * torch.tensor([0.3, 0.71], dtype=F64)
    right = hi[:, 0] + (hi[:, k] - hi[:, 0]) * torch.tensor([0.52, 0.9], dtype=F64)
    middle = knots[:, k + 2] + 0.37 * (knots[:, k + 3] - knots[:, k + 2])
    new = torch.stack([left, middle, right], dim=1)
    t2, c2 = insert_knots(knots, coef, new, k)
    assert t2.shape == (2, knots.shape[1] + 3) and c2.shape == (2, G + k + 3, n_out)
    for i in range(2):
        assert torch.equal(t2[i], torch.sort(torch.cat([knots[i], new[i]])).values)
        x = line(t2[i])
        before = spline_and_derivatives(x, knots[i], coef[i], k)
        after = spline_and_derivatives(x, t2[i], c2[i], k)
        for a, b in zip(after, before):
            assert (a - b).abs().max().item() <= 1e-12 * b.abs().max().item()


def test_insert_knots_into_a_padding_cell_keeps_a_layer():
    """KANLayer.insert_knots on a uniform layer: knots in the padding (between t_0 and t_k, and beyond t_{n-1-k})
    and inside; the layer's edges keep their values and first two derivatives everywhere."""
    torch.manual_seed(40)
    layer = KANLayer(2, 3, grid=5, k=3).double()
    randomize(layer, 41)
    t = layer.knot_vector().clone()
    h = torch.stack([line(t[0], 300), line(t[1], 300)], dim=1)
    before = [e.detach() for e in layer.edge_derivatives(h, 2)]
    new = torch.stack([t[:, 0] + 0.15, t[:, 2] + 0.33, t[:, 6] + 0.05, t[:, -1] - 0.01], dim=1)
    layer.insert_knots(new)
    assert not layer.uniform and layer.grid == 9
    assert torch.equal(layer.knots, torch.sort(torch.cat([t, new], dim=1)).values)
    for graph in (False, True):
        after = layer.edge_derivatives(h, 2, graph_to_input=graph)
        for a, b in zip(after, before):
            assert (a.detach() - b).abs().max().item() <= 1e-12 * b.abs().max().item()


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=needs_kernel), False])
def test_layer_insert_knots_keeps_the_network_jet(kernel):
    model = free_model([2, 4, 1], seed=42)
    x = points(80, seed=43, spread=2.2, extra=model.layers[0].knots[0])
    with native.switched(kernel):
        before = model.forward_jet(x, PAIRS)
        for layer in model.layers:
            t = layer.knots
            layer.insert_knots(torch.stack([(t[:, 0] + t[:, 1]) / 2, 0.7 * t[:, 5] + 0.3 * t[:, 6]], dim=1))
        after = model.forward_jet(x, PAIRS)
    for a, b in zip((after.value, after.first, after.second), (before.value, before.first, before.second)):
        assert rel(a.detach(), b.detach()) <= 1e-12


# --------------------------------------------------------------------------------------------------------------------
# 5. growing the range


def test_extend_knots_keeps_the_spline():
    k = 3
    knots = random_knots(1, 4, k, -1.0, 1.0, seed=50)
    coef = torch.randn(1, 4 + k, 2, generator=torch.Generator().manual_seed(51), dtype=F64)
    left = torch.tensor([[-1.9, -1.4]], dtype=F64)
    right = torch.tensor([[1.3]], dtype=F64)
    t2, c2 = extend_knots(knots, coef, left, right)
    assert torch.equal(t2[0], torch.cat([left[0], knots[0], right[0]]))
    x = line(t2[0])
    for a, b in zip(spline_and_derivatives(x, t2[0], c2[0], k), spline_and_derivatives(x, knots[0], coef[0], k)):
        assert (a - b).abs().max().item() <= 1e-12 * b.abs().max().item()


@pytest.mark.parametrize("lo,hi", [(-3.0, 0.5), (0.0, 2.7), (-10.0, 10.0), (-1.05, 1.05), (-0.5, 0.5)])
def test_cover_reaches_the_target_with_as_few_knots_as_needed(lo, hi):
    k = 3
    t = random_knots(1, 5, k, -1.8, 1.8, seed=52)[0]
    out = cover(t, lo, hi, k)
    check_knots("covered", out.unsqueeze(0), k)
    n_left = int((out < t[0]).sum())
    n_right = int((out > t[-1]).sum())
    assert torch.equal(out[n_left : n_left + len(t)], t)  # the old knots, untouched and contiguous
    assert out[k] <= lo and out[-1 - k] >= hi
    assert n_left <= 2 * k and n_right <= 2 * k
    # one knot fewer at an end that grew would not cover
    if n_left:
        assert out[k + 1] > lo
    if n_right:
        assert out[-2 - k] < hi
    if t[k] <= lo and t[-1 - k] >= hi:
        assert torch.equal(out, t)


def test_knot_plan_grows_hidden_ranges_and_keeps_the_network():
    torch.manual_seed(53)
    model = KAN([2, 4, 3, 1], grid=5, k=3).double()
    for l, layer in enumerate(model.layers):
        randomize(layer, 54 + l, amp=2.0)  # large: the hidden layers see inputs outside their ranges
    x = points(200, seed=55, spread=1.0)
    seen = model.layer_inputs(x)
    assert any(bool((h.abs() > 1.0).any()) for h in seen[1:]), "the test needs hidden inputs outside [-1, 1]"
    old = [layer.knot_vector().clone() for layer in model.layers]
    probe = points(300, seed=56, spread=3.5, extra=torch.linspace(-2.2, 2.2, 12))  # inside, padding, outside
    with torch.no_grad():
        before = model(probe)
    plan = model.knot_plan(8, x)
    model.refine_knots(plan)
    assert model.free_knots
    grids = {layer.grid for layer in model.layers}
    assert len(grids) == 1 and grids.pop() >= 8
    for layer, t, p in zip(model.layers, old, plan):
        assert torch.equal(layer.knots, p.to(layer.knots))
        assert all(bool(torch.isin(t[i], layer.knots[i]).all()) for i in range(layer.in_features))  # a refinement
    with torch.no_grad():
        assert rel(model(probe), before) <= 1e-12
    for layer, h in zip(model.layers[1:], model.layer_inputs(x)[1:]):
        lo, hi = layer.grid_ranges()
        assert bool((lo <= h.min(0).values).all() and (hi >= h.max(0).values).all())
    assert model.grid_range == (-1.0, 1.0)
    assert torch.equal(model.layers[0].grid_ranges()[0], torch.full((2,), -1.0, dtype=F64))  # the first layer does not move


# --------------------------------------------------------------------------------------------------------------------
# 6. grid extension on free knots is exact; on uniform grids it is not, on the padding


@pytest.mark.parametrize("steps", [(10,), (10, 13)])
def test_extend_grid_on_free_knots_is_exact(steps):
    model = free_model([2, 3, 1], seed=60)
    x = points(300, seed=61, spread=2.5)
    with torch.no_grad():
        before = model(x)
    old = model.layers[0].knots.clone()
    G = model.grid
    for g in steps:
        assert model.extension_is_exact(G, g)
        model.extend_grid(g)
        G = g
        assert all(layer.grid == g for layer in model.layers) and model.free_knots
    with torch.no_grad():
        assert rel(model(x), before) <= 1e-12
    if steps == (10,):  # a doubling splits every interior cell at its midpoint
        k = model.k
        mids = (old[:, k:-k - 1] + old[:, k + 1:-k]) / 2
        assert rel(model.layers[0].knots, torch.sort(torch.cat([old, mids], dim=1)).values) <= 1e-15


def test_extend_grid_to_the_same_grid_on_free_knots_keeps_the_function():
    model = free_model([2, 3, 1], seed=64)
    x = points(100, seed=65, spread=2.0)
    with torch.no_grad():
        before = model(x)
    assert model.extension_is_exact(model.grid, model.grid)
    model.extend_grid(model.grid)
    with torch.no_grad():
        assert rel(model(x), before) <= 1e-12


def test_extend_grid_on_a_uniform_grid_is_not_exact_on_the_padding(f64):
    torch.manual_seed(62)
    model = KAN([2, 3, 1], grid=5, k=3).double()
    for l, layer in enumerate(model.layers):
        randomize(layer, 63 + l)
    free = copy.deepcopy(model)
    free.use_free_knots()
    assert not model.extension_is_exact(5, 13) and free.extension_is_exact(5, 13)
    pad = torch.tensor([[1.1, -1.15], [-1.3, 1.25], [1.6, 0.0], [-1.8, 0.2]])  # the first layer's padding (|x| in (1, 2.2))
    with torch.no_grad():
        before = model(pad)
    model.extend_grid(10)
    free.extend_grid(10)
    with torch.no_grad():
        assert rel(free(pad), before) <= 1e-12
        assert rel(model(pad), before) >= 1e-4  # the least-squares refit fits the range only: the padding changes


# --------------------------------------------------------------------------------------------------------------------
# 7. the coefficient maps of knot changes


def dense_map(old_knots: torch.Tensor, new_knots: torch.Tensor, k: int) -> torch.Tensor:
    """(in, n_new, n_old): the exact map of a refinement by least squares on dense Cox–de Boor samples."""
    maps = []
    for t_old, t_new in zip(old_knots, new_knots):
        z = torch.linspace(float(t_new[0]) - 0.1, float(t_new[-1]) + 0.1, 2000, dtype=F64)
        maps.append(torch.linalg.lstsq(cox_de_boor_basis(z, t_new, k), cox_de_boor_basis(z, t_old, k)).solution)
    return torch.stack(maps)


def test_extension_and_change_maps_are_the_coefficient_maps():
    layer = free_model([2, 3], seed=70).layers[0]
    k, t = layer.k, layer.knots.clone()
    changes = {
        "extend 5 -> 8": lambda l: l.extend(8),
        "insert": lambda l: l.insert_knots(torch.stack([t[:, 1] + 0.01, t[:, 5] + 0.02], dim=1)),
        "refine_to": lambda l: l.refine_to(torch.cat([t[:, :1] - 0.5, t, t[:, -1:] + 0.3], dim=1)),
        "move_knots": lambda l: l.move_knots(torch.cat([t[:, :5], t[:, 6:]], dim=1)),
    }
    for name, change in changes.items():
        M = layer.extension_map(8) if name == "extend 5 -> 8" else layer.change_map(change)
        moved = copy.deepcopy(layer)
        change(moved)
        assert M.shape == (2, moved.coef.shape[1], layer.coef.shape[1]), name
        assert rel(torch.einsum("inm,imo->ino", M, layer.coef.detach()), moved.coef.detach()) <= 1e-12, name
        if name != "move_knots":  # exact changes: the map is the unique one that keeps every spline
            assert rel(M, dense_map(t, moved.knots, k)) <= 1e-10, name


# --------------------------------------------------------------------------------------------------------------------
# 8. moving knots: exact onto a superset, least squares onto fewer


def edge_splines_ref(layer, z: torch.Tensor) -> torch.Tensor:
    """(batch, in, out) the unscaled splines by Cox–de Boor; z (batch, in)."""
    t = layer.knot_vector()
    return torch.stack([cox_de_boor_basis(z[:, i], t[i], layer.k) @ layer.coef[i].detach() for i in range(layer.in_features)], dim=1)


def test_move_knots_onto_a_superset_is_exact():
    layer = free_model([2, 3], seed=80).layers[0]
    t = layer.knots.clone()
    z = torch.stack([line(t[0]), line(t[1])], dim=1)
    before = edge_splines_ref(layer, z)
    new = torch.sort(torch.cat([t[:, :1] - 0.4, t, (t[:, 3:6] + t[:, 4:7]) / 2, t[:, -1:] + 0.2], dim=1)).values
    layer.move_knots(new)
    assert torch.equal(layer.knots, new)
    assert rel(edge_splines_ref(layer, z), before) <= 1e-10


def test_move_knots_onto_fewer_knots_is_the_least_squares_fit():
    """The fit is on samples inside every old and new cell (n_fit per cell, at the midpoints of equal parts):
    no coefficients on the new knots do better there than a separate least-squares solve."""
    layer = free_model([2, 3], seed=81).layers[0]
    old_layer = copy.deepcopy(layer)
    k, t, n_fit = layer.k, layer.knots.clone(), 5
    new = torch.cat([t[:, :4], t[:, 5:7], t[:, 8:]], dim=1)  # two interior knots dropped
    layer.move_knots(new, n_fit=n_fit)
    frac = (torch.arange(n_fit, dtype=F64) + 0.5) / n_fit
    for i in range(2):
        z = torch.cat([(kv[:-1, None] + kv.diff()[:, None] * frac).flatten() for kv in (t[i], new[i])])
        target = cox_de_boor_basis(z, t[i], k) @ old_layer.coef[i].detach()
        A = cox_de_boor_basis(z, new[i], k)
        best = torch.linalg.lstsq(A, target).solution
        err_best = (A @ best - target).norm(dim=0)
        err_moved = (A @ layer.coef[i].detach() - target).norm(dim=0)
        assert bool((err_best > 1e-6).all())  # fewer knots: not exact
        assert bool((err_moved <= err_best * (1 + 1e-9)).all())
        # and on a dense sample of the whole line it is close to the best there too
        zd = line(t[i], 2000)
        Ad, yd = cox_de_boor_basis(zd, new[i], k), cox_de_boor_basis(zd, t[i], k) @ old_layer.coef[i].detach()
        dense_best = (Ad @ torch.linalg.lstsq(Ad, yd).solution - yd).norm(dim=0)
        assert bool(((Ad @ layer.coef[i].detach() - yd).norm(dim=0) <= 1.5 * dense_best).all())


# --------------------------------------------------------------------------------------------------------------------
# 9. saving, loading and selecting keep the knots


def test_state_dict_round_trip_into_a_fresh_uniform_model():
    model = free_model([2, 4, 3, 1], seed=90)
    x = points(100, seed=91, spread=2.5)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = KAN(**model.config()).double()
    assert not fresh.free_knots
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.free_knots
    for a, b in zip(fresh.layers, model.layers):
        assert torch.equal(a.knots, b.knots) and a.grid == b.grid
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    a, b = fresh.forward_jet(x, PAIRS), model.forward_jet(x, PAIRS)
    for p, q in zip((a.value, a.first, a.second), (b.value, b.first, b.second)):
        assert torch.equal(p, q)


def test_select_and_keep_nodes_keep_the_knots():
    model = free_model([2, 4, 3, 1], seed=92)
    layer = model.layers[1]
    inputs, outputs = torch.tensor([3, 0, 2]), torch.tensor([2, 0])
    part = layer.select(inputs, outputs)
    assert torch.equal(part.knots, layer.knots[inputs])
    h = points(60, seed=93, spread=2.6).repeat(1, 2)
    sub = part.edges(h[:, inputs])[0]
    full = layer.edges(h)[0][:, inputs][:, :, outputs]
    assert torch.equal(sub, full)
    # keeping every hidden node in another order keeps the network; keeping some keeps their knots
    x = points(100, seed=94, spread=2.0)
    with torch.no_grad():
        before = model(x)
    permuted = copy.deepcopy(model)
    permuted.keep_nodes([torch.tensor([2, 0, 3, 1]), torch.tensor([1, 2, 0])])
    with torch.no_grad():
        assert rel(permuted(x), before) <= 1e-13
    assert torch.equal(permuted.layers[1].knots, model.layers[1].knots[[2, 0, 3, 1]])
    model.keep_nodes([torch.tensor([1, 3]), torch.tensor([0, 2])])
    assert model.width == [2, 2, 2, 1]
    assert torch.equal(model.layers[2].knots, free_model([2, 4, 3, 1], seed=92).layers[2].knots[[0, 2]])


# --------------------------------------------------------------------------------------------------------------------
# 10. bad input


def test_bad_knots_are_refused_with_a_message():
    k = 3
    t = random_knots(2, 5, k, -1.0, 1.0, seed=100)
    bad = t.clone()
    bad[1, 4] = bad[1, 3]
    with pytest.raises(ValueError, match=r"strictly increasing: input 1 has knots\[3\]"):
        check_knots("knots", bad, k)
    layer = KANLayer(2, 3, grid=5, k=k).double()
    with pytest.raises(ValueError, match="strictly increasing"):
        layer.set_knots(bad, layer.coef.detach().clone())
    assert layer.uniform  # unchanged
    coef = torch.zeros(2, 5 + k, 3, dtype=F64)
    with pytest.raises(ValueError, match="must lie inside the knot vector: input 0"):
        insert_knots(t, coef, torch.tensor([[t[0, 0] - 0.1], [0.0]], dtype=F64), k)
    with pytest.raises(ValueError, match="must lie inside the knot vector"):
        insert_knots(t, coef, torch.tensor([[0.0], [t[1, -1]]], dtype=F64), k)  # the last knot itself is not inside
    with pytest.raises(ValueError, match="already has a knot"):
        insert_knots(t, coef, torch.tensor([[0.0123], [t[1, 5]]], dtype=F64), k)
    layer.set_knots(t, coef)
    with pytest.raises(ValueError, match="must lie inside the knot vector"):
        layer.insert_knots(torch.tensor([[5.0], [0.0]], dtype=F64))
    with pytest.raises(ValueError, match="already has a knot"):
        layer.insert_knots(t[:, 4:5].clone())
    with pytest.raises(ValueError, match="drop some of its knots"):
        layer.refine_to(torch.cat([t[:, :4], (t[:, 4:5] + t[:, 5:6]) / 2, t[:, 5:]], dim=1))  # t[:, 4] replaced
    with pytest.raises(ValueError, match="only B-spline edges have knots"):
        KAN([2, 3, 1], basis="chebyshev").use_free_knots()


# --------------------------------------------------------------------------------------------------------------------
# 11. subdivision


@pytest.mark.parametrize("G,parts", [(5, 2), (4, 3), (3, 4)])
def test_subdivision_of_a_uniform_grid_is_the_finer_uniform_grid(G, parts):
    k = 3
    lo, h = torch.tensor([-1.0, 0.3], dtype=F64), torch.tensor([0.4, 0.7], dtype=F64)
    knots = uniform_knots(lo, h, G, k)
    new = subdivision(knots, k, G * (parts - 1))
    assert new.shape == (2, G * (parts - 1))
    merged = torch.sort(torch.cat([knots[:, k:-k], new], dim=1)).values
    assert (merged - uniform_knots(lo, h / parts, G * parts, 0)).abs().max().item() <= 1e-14


def test_subdivision_beyond_a_multiple_halves_the_longest_cells():
    k = 2
    knots = torch.tensor([[-3.0, -2.0, 0.0, 0.5, 2.5, 3.0, 4.0, 5.0]], dtype=F64)  # interior cells 0.5, 2, 0.5
    new = subdivision(knots, k, 2)  # no whole refinement (3 + 2 < 2·3): the 2-long cell halved, then a half of it
    assert torch.allclose(torch.sort(new[0]).values, torch.tensor([1.0, 1.5], dtype=F64))


def test_the_kept_cell_pieces_follow_every_change_of_the_knots():
    """The layer keeps knot_pieces between evaluations: changing the knots in place, replacing them, or loading
    others must all be seen (the result equals a model built afresh on those knots)."""
    model = free_model([2, 3, 1], seed=21)
    x = torch.rand(200, 2, dtype=torch.float64) * 3 - 1.5
    model(x)  # fills the cache
    other = free_model([2, 3, 1], seed=22)
    for layer, new in zip(model.layers, other.layers):
        layer.knots.copy_(new.knots)  # in place: same tensor, new version
        for mine, theirs in zip(layer.parameters(), new.parameters()):
            mine.data.copy_(theirs.data)
    torch.testing.assert_close(model(x), reference(other, x), rtol=1e-12, atol=1e-12)
    third = free_model([2, 3, 1], seed=23)
    model.load_state_dict(third.state_dict())
    torch.testing.assert_close(model(x), reference(third, x), rtol=1e-12, atol=1e-12)
