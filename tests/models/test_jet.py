"""The forward derivative back end (kanpde.models.jet, forward_jet) against nested autograd, in float64."""
import pytest
import torch
from torch import nn

from kanpde import KAN, MLP, Fields
from kanpde.pde.derivatives import resolve_backend
from kanpde.models.jet import ACTIVATION_DERIVATIVES, Jet, all_pairs, silu_derivatives, supports_jet
from kanpde.pde.metrics import predict
from kanpde.models import native
from kanpde.models.basis import bspline_cells, cell_polynomials, cox_de_boor_basis
from kanpde.problems.poisson import Poisson2D

F64 = torch.float64
REL = 1e-10


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (absolute where b is all zero)."""
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / (scale if scale > 0 else 1.0)


def probe_points(dim: int, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Random points in [-1.2, 1.2]^dim plus points on, and 1e-12 beside, the knots of a G=5 grid on
    [-1, 1], and points in the padded region and beyond the padded grid (|x| up to 3)."""
    gen = torch.Generator().manual_seed(seed)
    x = 2.4 * torch.rand(n, dim, generator=gen, dtype=F64) - 1.2
    knots = torch.linspace(-1, 1, 6, dtype=F64)
    special = torch.cat([knots, knots + 1e-12, knots - 1e-12, torch.tensor([1.5, -1.9, 2.3, -2.5, 3.0], dtype=F64)])
    rows = special.unsqueeze(1).expand(-1, dim).clone()
    rows[:, 1:] = x[: rows.shape[0], 1:]  # special values in the first input, random in the others
    return torch.cat([x, rows, rows.flip(1)])


def both_backends(model: nn.Module, x: torch.Tensor, n_out: int):
    """Every value, first and second partial (mixed included) of every output, and the parameter
    gradient of a loss built from them, by each back end."""
    names = ("x", "y", "z")[: x.shape[1]]
    outs = tuple(f"u{i}" for i in range(n_out))
    result = {}
    for backend in ("forward", "autograd"):
        model.zero_grad(set_to_none=True)
        f = Fields(model, x, names, outs, backend)
        parts = []
        for o in outs:
            parts.append(f[o])
            parts += [f.d(o, a) for a in names]
            parts += [f.d(o, a, b) for i, a in enumerate(names) for b in names[i:]]
        loss = sum((p * (j + 1)).square().mean() for j, p in enumerate(parts))
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        result[backend] = (torch.stack(parts).detach(), grads)
    return result


@pytest.mark.parametrize("width", [[2, 1], [2, 3], [2, 4, 1], [3, 3, 2], [2, 5, 3, 2], [1, 4, 4, 1]])
@pytest.mark.parametrize("grid,k", [(5, 3), (3, 1), (7, 2), (4, 4)])
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch-ops"])
def test_kan_forward_matches_nested_autograd(width, grid, k, kernel):
    """Both routes of the forward pass: the compiled CPU kernel (where it builds) and torch operations."""
    torch.manual_seed(1)
    model = KAN(width, grid=grid, k=k, init_scale=0.5).double()
    x = probe_points(width[0])
    with native.switched(kernel):
        res = both_backends(model, x, width[-1])
    (va, ga), (vb, gb) = res["forward"], res["autograd"]
    assert rel_diff(va, vb) <= REL
    assert len(ga) == len(gb) == len(list(model.parameters()))
    for a, b in zip(ga, gb):
        assert rel_diff(a, b) <= REL


@pytest.mark.parametrize("activation", ["tanh", "silu", "sin", "gelu", "softplus"])
@pytest.mark.parametrize("width", [[2, 8, 1], [3, 6, 6, 2]])
def test_mlp_forward_matches_nested_autograd(activation, width):
    torch.manual_seed(2)
    model = MLP(width, activation=activation, bounds=([-2.0] * width[0], [2.0] * width[0])).double()
    x = 3 * probe_points(width[0])
    res = both_backends(model, x, width[-1])
    (va, ga), (vb, gb) = res["forward"], res["autograd"]
    assert rel_diff(va, vb) <= REL
    for a, b in zip(ga, gb):
        assert rel_diff(a, b) <= REL


@pytest.mark.parametrize("name", sorted(ACTIVATION_DERIVATIVES))
def test_activation_derivatives_match_autograd(name):
    h = torch.cat([torch.linspace(-25, 25, 501, dtype=F64), torch.tensor([19.99, 20.0, 20.01], dtype=F64)]).requires_grad_()
    act = {"tanh": torch.tanh, "silu": nn.functional.silu, "sin": torch.sin, "gelu": nn.GELU(), "softplus": nn.Softplus()}[name]
    s0, s1, s2 = ACTIVATION_DERIVATIVES[name](h)
    y = act(h)
    (d1,) = torch.autograd.grad(y.sum(), h, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), h, allow_unused=True, materialize_grads=True)
    assert rel_diff(s0, y) <= REL and rel_diff(s1, d1) <= REL and rel_diff(s2, d2) <= REL


def test_silu_derivatives_to_third_order():
    h = torch.linspace(-12, 12, 401, dtype=F64).requires_grad_()
    got = silu_derivatives(h, 3)
    ref = [nn.functional.silu(h)]
    for _ in range(3):
        (g,) = torch.autograd.grad(ref[-1].sum(), h, create_graph=True)
        ref.append(g)
    for d in range(4):
        assert rel_diff(got[:, d], ref[d]) <= REL
    with pytest.raises(ValueError, match="order"):
        silu_derivatives(h, 4)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_cell_polynomials_reproduce_the_spline(k):
    """Each cell's polynomial equals the B-spline sum (Cox–de Boor reference) inside the cell, and 0 outside the grid."""
    G = 6
    gen = torch.Generator().manual_seed(k)
    coef = torch.randn(2, G + k, 3, generator=gen, dtype=F64)
    lo, h = torch.tensor([-1.0, 0.5], dtype=F64), torch.tensor([0.25, 0.1], dtype=F64)
    x = torch.stack([torch.linspace(-1 - (k + 1) * 0.25, 0.5 + (k + 1) * 0.25, 300, dtype=F64),
                     torch.linspace(0.5 - (k + 1) * 0.1, 1.1 + (k + 1) * 0.1, 300, dtype=F64)], dim=1)
    cell, t = bspline_cells(x, lo, h, G, k)
    P = cell_polynomials(coef, k)  # (in, cells, k+1, out)
    got = torch.stack([sum(P[i, cell[:, i], p] * t[:, i, None] ** p for p in range(k + 1)) for i in range(2)], dim=1)
    for i in range(2):
        knots = lo[i] + h[i] * torch.arange(-k, G + k + 1, dtype=F64)
        ref = cox_de_boor_basis(x[:, i], knots, k) @ coef[i]
        assert (got[:, i] - ref).abs().max().item() < 1e-12
    assert P[:, -1].abs().max() == 0  # the cell outside points use


def test_third_partials_continue_from_the_jet_by_autograd():
    torch.manual_seed(3)
    model = KAN([2, 4, 1], grid=5, k=4).double()
    x = probe_points(2)
    vals = {}
    for backend in ("forward", "autograd"):
        f = Fields(model, x, ("x", "y"), ("u",), backend)
        vals[backend] = torch.stack([f.d("u", "x", "x", "y"), f.d("u", "y", "y", "y"), f.laplacian("u")]).detach()
    assert rel_diff(vals["forward"], vals["autograd"]) <= REL


def test_graph_to_input_path_equals_the_hand_written_backward():
    torch.manual_seed(4)
    model = KAN([2, 5, 2], grid=4).double()
    x = probe_points(2)
    pairs = all_pairs(2, mixed=True)
    plain = model.forward_jet(x, pairs)
    graphed = model.forward_jet(x.clone().requires_grad_(), pairs)
    for a, b in [(plain.value, graphed.value), (plain.first, graphed.first), (plain.second, graphed.second)]:
        assert rel_diff(a, b) <= REL


def test_backend_choice_and_errors():
    kan, mlp = KAN([2, 3, 1]), MLP([2, 4, 1])
    assert resolve_backend(kan) == "forward" and resolve_backend(mlp) == "forward"
    assert resolve_backend(kan, "autograd") == "autograd"

    class Plain(nn.Module):
        def forward(self, x):
            return x[:, :1] ** 2

    class Custom(MLP):
        def forward(self, x):  # changes the function: the inherited forward_jet would be wrong
            return 2 * super().forward(x)

    assert not supports_jet(Plain()) and not supports_jet(Custom([2, 4, 1]))
    assert resolve_backend(Plain()) == "autograd" and resolve_backend(Custom([2, 4, 1])) == "autograd"
    with pytest.raises(ValueError, match="derivatives=forward"):
        resolve_backend(Custom([2, 4, 1]), "forward")
    with pytest.raises(ValueError, match="derivatives"):
        resolve_backend(kan, "reverse")
    x = torch.rand(5, 2, dtype=F64)
    f = Fields(Plain(), x, ("x", "y"), ("u",))  # auto falls back to autograd
    assert torch.allclose(f.d("u", "x", "x"), torch.full((5,), 2.0, dtype=F64))


def test_a_residual_needs_one_forward_pass_from_its_second_call():
    torch.manual_seed(5)
    problem = Poisson2D(n_interior=64, n_boundary=16)
    model = KAN([2, 3, 1], grid=4, bounds=([-1, -1], [1, 1])).double()
    points = {t: {k: v.double() for k, v in p.items()} for t, p in problem.sample_points(0).items()}
    calls = []
    original = model.forward_jet

    def counting(x, pairs=()):
        calls.append(tuple(pairs))
        return original(x, pairs)

    model.forward_jet = counting
    first = problem.losses(model, points)
    n_first = len(calls)
    calls.clear()
    second = problem.losses(model, points)
    assert calls == [((0, 0), (1, 1))]  # the PDE term, once, with both second partials; the boundary term needs none
    assert n_first >= 1
    assert all(torch.equal(first[t], second[t]) for t in first)
    ref = problem.losses(model, points, "autograd")
    assert all(rel_diff(first[t], ref[t]) <= REL for t in first)


def test_jet_checks_its_shapes():
    with pytest.raises(ValueError, match="jet parts"):
        Jet(torch.zeros(3, 2), torch.zeros(2, 3), None, ())


def test_predict_in_chunks_equals_one_pass():
    torch.manual_seed(6)
    model = KAN([2, 4, 1], grid=5).double()
    x = 2 * torch.rand(1000, 2, dtype=F64) - 1
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(predict(model, x, chunk=128), ref, rtol=0, atol=1e-14)
    assert not predict(model, x, chunk=128).requires_grad
