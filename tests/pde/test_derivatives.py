"""Tests for kanpde.pde.derivatives.Fields against hand-derived derivatives."""
import pytest
import torch
from torch import nn

from kanpde import KAN, Fields

F64 = torch.float64
ATOL = 1e-10


class Known(nn.Module):
    """(x, y) -> (u, v) with u = sin(x) y^3 + x^2 y and v = exp(x y)."""

    def forward(self, p):
        x, y = p[:, 0], p[:, 1]
        u = torch.sin(x) * y**3 + x**2 * y
        v = torch.exp(x * y)
        return torch.stack([u, v], dim=1)


class Scaled(nn.Module):
    """u = a x^2 y with a learnable a (to check that derivatives keep the parameter graph)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.5, dtype=F64))

    def forward(self, p):
        return (self.a * p[:, 0] ** 2 * p[:, 1]).unsqueeze(1)


@pytest.fixture
def pts():
    gen = torch.Generator().manual_seed(0)
    return 4 * torch.rand(64, 2, generator=gen, dtype=F64) - 2


@pytest.fixture
def fields(pts):
    return Fields(Known(), pts, ("x", "y"), ("u", "v"))


def close(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() < ATOL


def test_values_and_coordinates(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    close(fields["u"], torch.sin(x) * y**3 + x**2 * y)
    close(fields["v"], torch.exp(x * y))
    assert torch.equal(fields["x"].detach(), x) and torch.equal(fields["y"].detach(), y)
    assert fields["u"].shape == (64,)


def test_first_derivatives(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    close(fields.d("u", "x"), torch.cos(x) * y**3 + 2 * x * y)
    close(fields.d("u", "y"), 3 * torch.sin(x) * y**2 + x**2)
    close(fields.d("v", "x"), y * torch.exp(x * y))
    close(fields.d("v", "y"), x * torch.exp(x * y))
    close(fields.d("u"), fields["u"])  # no wrt: the output itself


def test_second_and_mixed_derivatives(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    close(fields.d("u", "y", "y"), 6 * torch.sin(x) * y)
    close(fields.d("u", "x", "x"), -torch.sin(x) * y**3 + 2 * y)
    uxy = 3 * torch.cos(x) * y**2 + 2 * x
    close(fields.d("u", "x", "y"), uxy)
    close(fields.d("u", "y", "x"), uxy)
    close(fields.d("v", "x", "y"), (1 + x * y) * torch.exp(x * y))
    close(fields.d("v", "y", "y"), x**2 * torch.exp(x * y))


def test_mixed_partial_order_does_not_matter_when_asked_first():
    """Asking d(u, y, x) before anything else gives the same as d(u, x, y) on a fresh object."""
    gen = torch.Generator().manual_seed(1)
    p = torch.rand(20, 2, generator=gen, dtype=F64)
    x, y = p[:, 0], p[:, 1]
    f = Fields(Known(), p, ("x", "y"), ("u", "v"))
    close(f.d("u", "y", "x"), 3 * torch.cos(x) * y**2 + 2 * x)


def test_third_order(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    close(fields.d("u", "x", "x", "x"), -torch.cos(x) * y**3)
    close(fields.d("u", "y", "y", "y"), 6 * torch.sin(x))
    close(fields.d("u", "x", "y", "y"), 6 * torch.cos(x) * y)
    close(fields.d("u", "y", "x", "y"), 6 * torch.cos(x) * y)
    close(fields.d("u", "x", "x", "y"), -3 * torch.sin(x) * y**2 + 2)
    close(fields.d("v", "x", "x", "x"), y**3 * torch.exp(x * y))


def test_grad(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    g = fields.grad("v")
    assert g.shape == (64, 2)
    close(g, torch.stack([y * torch.exp(x * y), x * torch.exp(x * y)], dim=1))
    close(fields.grad("u"), torch.stack([torch.cos(x) * y**3 + 2 * x * y, 3 * torch.sin(x) * y**2 + x**2], dim=1))


def test_laplacian(fields, pts):
    x, y = pts[:, 0], pts[:, 1]
    close(fields.laplacian("u"), -torch.sin(x) * y**3 + 2 * y + 6 * torch.sin(x) * y)
    close(fields.laplacian("u", wrt=("x",)), -torch.sin(x) * y**3 + 2 * y)
    close(fields.laplacian("u", wrt=("y",)), 6 * torch.sin(x) * y)
    close(fields.laplacian("v"), (x**2 + y**2) * torch.exp(x * y))


def test_derivatives_keep_graph_for_training():
    """d/da of sum(laplacian(a x^2 y)) = sum(2 y): the derivative must stay differentiable in the parameters."""
    gen = torch.Generator().manual_seed(2)
    p = torch.rand(30, 2, generator=gen, dtype=F64)
    model = Scaled()
    f = Fields(model, p, ("x", "y"), ("u",))
    lap = f.laplacian("u")
    close(lap, 2 * 1.5 * p[:, 1])
    (ga,) = torch.autograd.grad(lap.sum(), model.a, retain_graph=True)
    assert abs(ga.item() - (2 * p[:, 1]).sum().item()) < 1e-10
    (gx,) = torch.autograd.grad(f.d("u", "x").sum(), model.a)  # du/dx = 2 a x y
    assert abs(gx.item() - (2 * p[:, 0] * p[:, 1]).sum().item()) < 1e-10


def test_input_that_requires_grad_is_used_as_is():
    p = torch.rand(5, 2, dtype=F64).requires_grad_(True)
    f = Fields(Known(), p, ("x", "y"), ("u", "v"))
    assert f.x is p
    close(f.d("v", "x"), (p[:, 1] * torch.exp(p[:, 0] * p[:, 1])).detach())


@pytest.mark.parametrize("trainable", [True, False])
def test_linear_model_higher_derivatives_are_zero(trainable):
    torch.manual_seed(0)
    lin = nn.Linear(3, 2).double()
    lin.requires_grad_(trainable)
    p = torch.rand(10, 3, dtype=F64)
    f = Fields(lin, p, ("x", "y", "t"), ("u", "v"))
    close(f.d("u", "y"), lin.weight[0, 1].detach().expand(10))
    close(f.grad("v"), lin.weight[1].detach().expand(10, 3))
    for wrt in [("x", "x"), ("x", "t"), ("y", "y", "t")]:
        d = f.d("u", *wrt)
        assert d.shape == (10,)
        assert torch.equal(d.detach(), torch.zeros(10, dtype=F64))
    assert torch.equal(f.laplacian("v").detach(), torch.zeros(10, dtype=F64))


def test_unknown_names_raise_keyerror(fields):
    with pytest.raises(KeyError):
        fields["w"]
    with pytest.raises(KeyError):
        fields.d("w", "x")
    with pytest.raises(KeyError):
        fields.d("u", "z")
    with pytest.raises(KeyError):
        fields.d("u", "x", "u")  # an output is not an input
    with pytest.raises(KeyError):
        fields.grad("x")
    with pytest.raises(KeyError):
        fields.laplacian("u", wrt=("x", "t"))


@pytest.mark.parametrize("shape", [(10, 3), (10,), (10, 1), (2, 10, 2)])
def test_wrong_input_shape_raises_valueerror(shape):
    with pytest.raises(ValueError, match="x must have shape"):
        Fields(Known(), torch.rand(*shape, dtype=F64), ("x", "y"), ("u", "v"))


def test_wrong_output_count_raises_valueerror():
    """The model runs when a residual first asks for something; a wrong output count fails there."""
    with pytest.raises(ValueError, match="output"):
        Fields(Known(), torch.rand(4, 2, dtype=F64), ("x", "y"), ("u",))["u"]
    kan = KAN([2, 3, 2], grid=3).double()
    for backend in ("forward", "autograd"):
        with pytest.raises(ValueError, match="output"):
            Fields(kan, torch.rand(4, 2, dtype=F64), ("x", "y"), ("u",), backend).d("u", "x")


def test_kan_laplacian_matches_hessian_trace(f64):
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid=5, k=3, bounds=([0.0, -1.0], [2.0, 1.0]))
    with torch.no_grad():
        for layer in model.layers:
            layer.coef.normal_(0, 0.5)
    gen = torch.Generator().manual_seed(3)
    p = torch.rand(6, 2, generator=gen) * torch.tensor([2.0, 2.0]) + torch.tensor([0.0, -1.0])
    f = Fields(model, p, ("x", "y"), ("u",))
    lap = f.laplacian("u").detach()
    grad = f.grad("u").detach()
    mixed = f.d("u", "x", "y").detach()
    for i in range(p.shape[0]):
        H = torch.autograd.functional.hessian(lambda q: model(q[None])[0, 0], p[i])
        J = torch.autograd.functional.jacobian(lambda q: model(q[None])[0, 0], p[i])
        assert abs(lap[i].item() - torch.trace(H).item()) < 1e-10
        assert abs(mixed[i].item() - H[0, 1].item()) < 1e-10
        assert (grad[i] - J).abs().max().item() < 1e-10
    assert lap.abs().max() > 1e-3  # non-trivial curvature
