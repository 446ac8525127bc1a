"""Symbolic edges, pruning, the sparsity penalty and formulas of KANs (kanpde.interpret)."""
from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

from kanpde.interpret.formula import evaluate, formula, raw_formula, snap
from kanpde.interpret.importance import edge_scores, node_scores, prune
from kanpde.interpret.auto_symbolic import auto_symbolic, edge_forms
from kanpde.io import load_model, save_model
from kanpde.models import KAN, MLP

PAIRS = ((0, 0), (0, 1), (1, 1))


def _net(width=(2, 3, 2), basis="bspline", seed=0) -> KAN:
    torch.manual_seed(seed)
    return KAN(list(width), grid=4, bounds=([-1.0, -2.0], [1.0, 2.0]), basis=basis).double()


def _autograd_derivatives(net, x):
    """Values (n, out), gradients (out, n, 2) and Hessians (out, n, 2, 2) by nested autograd."""
    x = x.clone().requires_grad_(True)
    y = net(x)
    grads, hess = [], []
    for o in range(y.shape[1]):
        g = torch.autograd.grad(y[:, o].sum(), x, create_graph=True)[0]
        grads.append(g)
        hess.append(torch.stack([torch.autograd.grad(g[:, a].sum(), x, retain_graph=True)[0] for a in range(2)], 1))
    return y, torch.stack(grads), torch.stack(hess)


def _mixed(width=(2, 3, 2), basis="bspline") -> KAN:
    """A KAN with numeric, symbolic and pruned edges."""
    net = _net(width, basis)
    net.fix_symbolic(0, 1, 2, "sin", (1.3, 0.2, 0.7, -0.1))
    net.fix_symbolic(0, 0, 0, "exp", (0.8, 0.0, 0.3, 0.1))
    net.fix_symbolic(1, 0, 1, "x^2", (1.0, 0.3, 0.5, 0.2))
    net.fix_symbolic(1, 2, 1, "tanh", (2.0, -0.1, 1.1, 0.0))
    net.layers[1].remove_edge(2, 0)
    return net


@pytest.mark.parametrize("basis", ["bspline", "chebyshev", "rbf"])
def test_symbolic_and_pruned_edges_keep_forward_derivatives_exact(basis):
    net = _mixed(basis=basis)
    x = torch.rand(40, 2, dtype=torch.float64) * torch.tensor([2.0, 4.0]) - torch.tensor([1.0, 2.0])
    jet = net.forward_jet(x, PAIRS)
    y, g, H = _autograd_derivatives(net, x)
    torch.testing.assert_close(jet.value, y, rtol=1e-10, atol=1e-12)
    for o in range(2):
        torch.testing.assert_close(jet.first[:, :, o].T, g[o], rtol=1e-10, atol=1e-12)
        for p, (a, b) in enumerate(PAIRS):
            torch.testing.assert_close(jet.second[p][:, o], H[o][:, a, b], rtol=1e-10, atol=1e-12)


def test_symbolic_edge_computes_its_formula_and_the_numeric_edge_is_off():
    net = _net((2, 1))
    x = torch.rand(30, 2, dtype=torch.float64)
    h = net.normalize(x)
    numeric_other = net.layers[0].edges(h)[0][:, 1, 0]
    net.fix_symbolic(0, 0, 0, "sin", (2.0, 0.5, 3.0, -1.0))
    expected = 3.0 * torch.sin(2.0 * h[:, 0] + 0.5) - 1.0 + numeric_other
    torch.testing.assert_close(net(x)[:, 0], expected, rtol=1e-12, atol=1e-12)
    assert net.layers[0].edge_kind(0, 0) == "sin" and net.layers[0].edge_kind(1, 0) == "numeric"


def test_fixed_inner_parameters_stay_fixed():
    net = _net((2, 1))
    net.fix_symbolic(0, 0, 0, "x", (5.0, 7.0, 2.0, 1.0))  # x fixes a = 1, b = 0
    a, b, c, d = net.layers[0].symbolic.params()[0, 0].tolist()
    assert (a, b, c, d) == (1.0, 0.0, 2.0, 1.0)
    x = torch.rand(10, 2, dtype=torch.float64)
    net(x).sum().backward()
    grad = net.layers[0].symbolic.affine.grad[0, 0]
    assert grad[0] == 0 and grad[1] == 0 and grad[2] != 0


def test_parameter_count_follows_edge_kinds():
    net = _mixed()
    per_edge = net.grid + net.k + 2
    numeric = 2 * 3 + 3 * 2 - 5  # 12 edges, 4 symbolic, 1 pruned
    # sin 4, exp 3 (b fixed), x^2 3 (a fixed), tanh 4
    assert net.n_params() == numeric * per_edge + 4 + 3 + 3 + 4
    assert _net().n_params() == sum(p.numel() for p in _net().parameters())


def test_save_and_load_keep_symbolic_and_pruned_edges(tmp_path):
    net = _mixed()
    net = prune(net, torch.rand(50, 2, dtype=torch.float64), threshold=0.0)  # nothing dropped, but narrowing path exercised
    save_model(tmp_path / "model.pt", net)
    back = load_model(tmp_path / "model.pt")
    x = torch.rand(20, 2, dtype=torch.float64)
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
    assert back.n_params() == net.n_params()
    assert [[back.layers[1].edge_kind(i, o) for o in range(2)] for i in range(3)] == \
        [[net.layers[1].edge_kind(i, o) for o in range(2)] for i in range(3)]


def test_old_checkpoints_without_masks_still_load(tmp_path):
    net = _net()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("mask")}
    fresh = _net(seed=1)
    fresh.load_state_dict(state)
    x = torch.rand(5, 2, dtype=torch.float64)
    torch.testing.assert_close(fresh(x), net(x))


def _zero_edge(layer, i, o):
    with torch.no_grad():
        layer.coef[i, :, o] = 0
        layer.scale_base[i, o] = 0
        layer.scale_sp[i, o] = 0


def test_pruning_an_exactly_zero_edge_leaves_the_output_unchanged():
    net = _net((2, 4, 1))
    _zero_edge(net.layers[0], 1, 2)
    x = torch.rand(200, 2, dtype=torch.float64) * 2 - 1
    before = net(x)
    pruned = prune(net, x, threshold=1e-12)
    assert pruned.width == [2, 4, 1] and pruned.layers[0].edge_kind(1, 2) == "pruned"
    assert net.layers[0].edge_kind(1, 2) == "numeric"  # the original is untouched
    torch.testing.assert_close(pruned(x), before, rtol=0, atol=1e-15)
    assert pruned.n_params() == net.n_params() - (net.grid + net.k + 2)


def test_pruning_drops_nodes_without_outgoing_edges_and_narrows_the_layers():
    net = _net((2, 4, 1))
    _zero_edge(net.layers[1], 1, 0)  # hidden node 1 feeds nothing
    _zero_edge(net.layers[1], 3, 0)
    x = torch.rand(200, 2, dtype=torch.float64) * 2 - 1
    before = net(x)
    pruned = prune(net, x, threshold=1e-12)
    assert pruned.width == [2, 2, 1]
    torch.testing.assert_close(pruned(x), before, rtol=1e-13, atol=1e-15)
    jet = pruned.forward_jet(x, PAIRS)  # the narrowed layers keep their derivative pass
    torch.testing.assert_close(jet.value, before, rtol=1e-13, atol=1e-15)


def test_node_scores_are_the_papers_max_over_edges():
    net = _net((2, 4, 1))
    x = torch.rand(100, 2, dtype=torch.float64)
    acts = net.edge_activations(x)
    incoming, outgoing = node_scores(net, x)[0]
    torch.testing.assert_close(incoming, acts[0].abs().mean(0).max(0).values)
    torch.testing.assert_close(outgoing, acts[1].abs().mean(0)[:, 0])
    torch.testing.assert_close(edge_scores(net, x)[1], acts[1].abs().mean(0))


def test_pruning_everything_is_an_error_naming_the_threshold():
    net = _net((2, 3, 1))
    with pytest.raises(ValueError, match="threshold 1000"):
        prune(net, torch.rand(10, 2, dtype=torch.float64), threshold=1000.0)


def test_regularization_matches_the_papers_definition():
    net = _net((2, 3, 1))
    x = torch.rand(64, 2, dtype=torch.float64)
    expected = 0.0
    for act in net.edge_activations(x):
        size = act.detach().abs().mean(0)
        share = size / size.sum()
        expected += 0.3 * float(size.sum()) - 0.7 * float((share * share.log()).sum().detach())
    assert float(net.regularization(x, l1=0.3, entropy=0.7)) == pytest.approx(expected, rel=1e-12)
    assert float(net.regularization(x, l1=0.0, entropy=0.0)) == 0.0


def _all_symbolic() -> KAN:
    net = _net((2, 2, 1))
    forms = {(0, 0, 0): ("sin", (1.3, 0.2, 0.7, -0.1)), (0, 1, 0): ("exp", (0.4, 0.0, 0.3, 0.1)),
             (0, 0, 1): ("x^2", (1.0, 0.3, 0.5, 0.2)), (0, 1, 1): ("gaussian", (1.5, -0.2, 1.1, 0.0)),
             (1, 0, 0): ("tanh", (2.0, -0.1, 1.1, 0.3)), (1, 1, 0): ("cos", (0.9, 0.4, -0.6, 0.05))}
    for (l, i, o), (name, params) in forms.items():
        net.fix_symbolic(l, i, o, name, params)
    return net


def test_formula_of_an_all_symbolic_network_equals_it_with_its_derivatives():
    net = _all_symbolic()
    assert net.is_symbolic()
    (expr,) = raw_formula(net, ("x", "y"))
    x = torch.rand(50, 2, dtype=torch.float64) * torch.tensor([2.0, 4.0]) - torch.tensor([1.0, 2.0])
    y, g, H = _autograd_derivatives(net, x)
    torch.testing.assert_close(torch.from_numpy(evaluate([expr], ("x", "y"), x)), y, rtol=1e-10, atol=1e-12)
    X, Y = sp.symbols("x y")
    grads = [sp.diff(expr, v) for v in (X, Y)]
    torch.testing.assert_close(torch.from_numpy(evaluate(grads, ("x", "y"), x)), g[0], rtol=1e-10, atol=1e-12)
    lap = sp.diff(expr, X, 2) + sp.diff(expr, Y, 2)
    torch.testing.assert_close(torch.from_numpy(evaluate([lap], ("x", "y"), x))[:, 0], H[0][:, 0, 0] + H[0][:, 1, 1],
                               rtol=1e-10, atol=1e-12)


def test_cleaned_formula_recovers_a_product_from_its_sum_form():
    """A [2,2,1] KAN set to 1/2 cos(pi(x - y)) - 1/2 cos(pi(x + y)) = sin(pi x) sin(pi y), its numbers off by 1e-7."""
    net = KAN([2, 2, 1], grid=3, bounds=([-1.0, -1.0], [1.0, 1.0])).double()
    e = 1e-7
    net.fix_symbolic(0, 0, 0, "x", (1, 0, math.pi * (1 + e), 0.0))
    net.fix_symbolic(0, 1, 0, "x", (1, 0, -math.pi, e))
    net.fix_symbolic(0, 0, 1, "x", (1, 0, math.pi, 0.0))
    net.fix_symbolic(0, 1, 1, "x", (1, 0, math.pi * (1 - e), 0.0))
    net.fix_symbolic(1, 0, 0, "cos", (1.0, 0.0, 0.5 + e, 0.0))
    net.fix_symbolic(1, 1, 0, "cos", (1.0, e, -0.5, 0.0))
    (expr,) = formula(net, ("x", "y"), digits=4)
    X, Y = sp.symbols("x y")
    assert sp.simplify(expr - sp.sin(sp.pi * X) * sp.sin(sp.pi * Y)) == 0
    (raw,) = formula(net, ("x", "y"), digits=None)
    assert raw.atoms(sp.Float)  # unrounded: the numbers as trained


def test_snap_prefers_the_simplest_constant():
    assert snap(3.14159, 3) == sp.pi
    assert snap(0.50004, 4) == sp.Rational(1, 2)
    assert snap(1.5708, 4) == sp.pi / 2
    assert snap(0.1234567, 4) == sp.Float(0.1235, 4)


def test_formula_of_a_network_with_numeric_edges_names_them():
    net = _net((2, 2, 1))
    with pytest.raises(ValueError, match="numeric edge"):
        formula(net, ("x", "y"))


def test_interpretation_of_an_mlp_is_refused():
    mlp = MLP([2, 5, 1])
    with pytest.raises(TypeError, match="needs a KAN; got MLP"):
        prune(mlp, torch.rand(4, 2))
    with pytest.raises(TypeError, match="needs a KAN; got MLP"):
        formula(mlp, ("x", "y"))


@pytest.mark.slow
def test_auto_symbolic_finds_the_forms_a_network_was_built_from():
    """Numeric edges fitted (least squares on their coefficients) to known closed forms are recognised."""
    net = KAN([1, 2, 1], grid=20, bounds=([-1.0], [1.0])).double()
    targets = {(0, 0, 0): lambda z: 0.5 * torch.sin(2.0 * z + 0.3), (0, 0, 1): lambda z: z**2 - 0.2}
    z = torch.linspace(-1, 1, 400, dtype=torch.float64)[:, None]
    layer = net.layers[0]
    B = layer.basis(z)[:, 0, :]  # (n, G + k)
    with torch.no_grad():
        layer.scale_base.zero_()
        layer.scale_sp.fill_(1.0)
        for (l, i, o), fn in targets.items():
            layer.coef[i, :, o] = torch.linalg.lstsq(B, fn(z[:, 0])[:, None]).solution[:, 0]
    forms = {(f.layer, f.i, f.o): f for f in auto_symbolic(net, z)}
    assert forms[(0, 0, 0)].name == "sin" and forms[(0, 0, 0)].r2 > 0.99999
    assert forms[(0, 0, 0)].a == pytest.approx(2.0, rel=1e-3) and forms[(0, 0, 0)].c == pytest.approx(0.5, rel=1e-3)
    assert forms[(0, 0, 1)].name == "x^2" and forms[(0, 0, 1)].d == pytest.approx(-0.2, abs=1e-4)
    assert net.is_symbolic()
    assert len(edge_forms(net)) == 4


def test_unknown_function_names_fail_with_the_name():
    net = _net((2, 1))
    with pytest.raises(ValueError, match="'sinh'"):
        net.fix_symbolic(0, 0, 0, "sinh")
    with pytest.raises(ValueError, match="'sinh'"):
        auto_symbolic(net, torch.rand(5, 2, dtype=torch.float64), library=["sin", "sinh"])


def test_unfix_symbolic_restores_the_numeric_edge():
    net = _net((2, 3, 1))
    x = torch.rand(30, 2, dtype=torch.float64)
    before = net(x)
    net.fix_symbolic(0, 1, 2, "sin", (2.0, 0.1, 0.5, 0.0))
    assert not torch.allclose(net(x), before)
    net.layers[0].unfix_symbolic(1, 2)
    assert net.layers[0].edge_kind(1, 2) == "numeric"
    torch.testing.assert_close(net(x), before, rtol=0, atol=0)
    assert net.n_params() == _net((2, 3, 1)).n_params()
