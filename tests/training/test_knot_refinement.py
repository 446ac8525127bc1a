"""Adaptive knots in training (trainer.knots, grid_extension.method=insert, grid_update=follow): indicators
against hand counts, placement rules, exactness of the changes, budgets and errors."""
from __future__ import annotations

import math

import pytest
import torch

from kanpde import MLP, Trainer, TrainerConfig
from kanpde.models import KAN
from kanpde.models.knots import knot_basis, knot_cells, uniform_knots
from kanpde.training.callbacks.base import Callback
from kanpde.models.kan import kan_of
from kanpde.training.callbacks.knots import (cell_indicator, cheap_knots, density_knots, descent_direction, knot_gradient,
                                              placed_by, plain_loss, quiet_cells, removed_by)

from conftest import setup_kan


class Probe(Callback):
    """The network's output on fixed points at the end of every step and at the start of the next (after
    the knot changes the default callbacks make at step start)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x, self.before, self.after, self.grids = x, {}, {}, {}

    def on_step_start(self, state) -> None:
        with torch.no_grad():
            self.after[state.step] = state.model(self.x).clone()
        self.grids[state.step] = state.model.grid

    def on_step_end(self, state) -> None:
        with torch.no_grad():
            self.before[state.step + 1] = state.model(self.x).clone()


class Snapshots(Callback):
    """``grab(state)`` at the start and end of every step, in ``seen[(step, "start" | "end")]`` (None: nothing kept)."""

    def __init__(self, grab) -> None:
        self.grab, self.seen = grab, {}

    def _keep(self, state, when) -> None:
        value = self.grab(state)
        if value is not None:
            self.seen[(state.step, when)] = value

    def on_step_start(self, state) -> None:
        self._keep(state, "start")

    def on_step_end(self, state) -> None:
        self._keep(state, "end")


def _optimizer_state(state) -> dict:
    """The state of the optimiser's first parameter, where the quasi-Newton method keeps H."""
    opt = state.optimizer
    return opt.state[opt.param_groups[0]["params"][0]]


def _train(problem, settings, width=(1, 4, 1), steps=12):
    model, points = setup_kan(problem, list(width))
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64).unsqueeze(1)  # inside and outside the domain
    probe = Probe(x)
    trainer = Trainer(steps=steps, log_every=1, progress=False, device="cpu", callbacks=[probe], **settings)
    result = trainer.fit(problem, model, points)
    return result, model, probe


def _changes(probe):
    return [s for s in sorted(probe.grids) if s > 0 and probe.grids[s] != probe.grids[s - 1]]


def test_cell_indicator_sums_the_residual_counts_the_points_and_integrates_the_curvature(f64):
    torch.manual_seed(0)
    model = KAN([2, 3, 1], grid=4)
    layer = model.layers[0]
    h = torch.rand(500, 2) * 5.6 - 2.8  # a few outside the padded knots [-2.5, 2.5]: in no cell
    w = torch.rand(500)
    cells, _ = knot_cells(h, layer.knot_vector())
    eta = cell_indicator(layer, h, w, "residual")
    count = cell_indicator(layer, h, None, "input")
    for i in range(2):
        for c in range(eta.shape[1]):
            inside = cells[:, i] == c
            assert eta[i, c] == pytest.approx(float(w[inside].sum()), abs=1e-12)
            assert count[i, c] == int(inside.sum())
    # curvature: the integral of sqrt(sum_o |phi''|) over each cell, against a fine midpoint rule by autograd
    curv = cell_indicator(layer, h, None, "curvature")
    t = layer.knot_vector()
    for i, c in [(0, 3), (1, 5), (0, 0)]:
        z = t[i, c] + (t[i, c + 1] - t[i, c]) * (torch.arange(400, dtype=torch.float64) + 0.5) / 400
        zz = torch.zeros(400, 2)
        zz[:, i] = z
        zz.requires_grad_(True)
        edges = layer.edges(zz, 0, graph_to_input=True)[0][:, i]  # (400, out)
        second = []
        for o in range(edges.shape[1]):
            first = torch.autograd.grad(edges[:, o].sum(), zz, create_graph=True, retain_graph=True)[0][:, i]
            second.append(torch.autograd.grad(first.sum(), zz, retain_graph=True)[0][:, i])
        second = torch.stack(second, 1)
        reference = float(second.abs().sum(1).sqrt().mean() * (t[i, c + 1] - t[i, c]))
        assert curv[i, c] == pytest.approx(reference, rel=1e-2)  # 8 midpoints per cell against 400


def test_placement_follows_the_indicator_and_falls_back_to_a_subdivision():
    knots = uniform_knots(torch.tensor([-1.0]), torch.tensor([0.5]), 4, 3)[0].double()  # cells 0..9, interior 3..6
    eta = torch.zeros(10, dtype=torch.float64)
    eta[4] = 9.0
    eta[6] = 2.0
    new = placed_by(eta, knots, 3, 3)
    # cell 4 gets the first knot (9 > 2), then 9/2 > 2 gives it the second; 9/3 = 3 > 2 the third
    assert torch.allclose(torch.sort(new).values, knots[4] + 0.5 * torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    new = placed_by(eta, knots, 5, 3)  # 9/4 = 2.25 > 2 keeps cell 4 for the fourth; 9/5 < 2 gives cell 6 the fifth
    assert int(((new > knots[6]) & (new < knots[7])).sum()) == 1
    even = placed_by(torch.zeros(10, dtype=torch.float64), knots, 4, 3)  # no indicator: halve the interior cells
    assert torch.allclose(torch.sort(even).values, knots[3:7] + 0.25)


def test_removal_drops_the_knots_between_the_quietest_cells_and_keeps_the_ends():
    knots = torch.arange(12, dtype=torch.float64)  # k = 3: interior knots 3..8, removable 4..7
    eta = torch.tensor([5, 5, 5, 5, 0.1, 0.1, 7, 7, 0.2, 5, 5], dtype=torch.float64)
    score = quiet_cells(eta)
    assert score[0] == score[-1] == math.inf and score[5] == pytest.approx(0.2) and score[4] == pytest.approx(5.1)
    kept = removed_by(score, knots, 2, 3)
    assert 5.0 not in kept.tolist() and 4.0 not in kept.tolist()  # knot 5 (0.1 + 0.1), then knot 4 (5 + 0.1)
    assert kept[3] == 3.0 and kept[-4] == 8.0 and len(kept) == 10
    with pytest.raises(ValueError, match="cannot remove 5 knots"):
        removed_by(score, knots, 5, 3)


def test_jump_removal_spares_the_knots_just_inserted_and_takes_the_cheapest_old_one(f64):
    # one edge equal to (x - 0.2)_+^3 on knots with 0.2 among them: every other knot costs nothing to remove
    layer = KAN([1, 1], grid=10, k=3).double().layers[0]
    knots = uniform_knots(torch.tensor([-1.0]), torch.tensor([0.2]), 10, 3).double()
    z = torch.linspace(-1, 1, 2001, dtype=torch.float64)[:, None]
    target = (z - 0.2).clamp_min(0) ** 3 / float(layer.scale_sp)
    coef = torch.linalg.lstsq(knot_basis(z, knots, 3)[:, 0], target).solution
    layer.set_knots(knots, coef.unsqueeze(0))
    before = layer.knot_vector().clone()
    layer.insert_knots(torch.tensor([[0.05]], dtype=torch.float64))
    score = cheap_knots(layer, before)[0]
    t = layer.knots[0]
    assert score[t == 0.05].item() == math.inf  # the new knot stays, though it costs nothing
    j = int(torch.nonzero(torch.isclose(t, torch.tensor(0.2, dtype=torch.float64))))
    assert score[j] == pytest.approx(((t[j + 1] - t[j - 1]) / 2).item() ** 3, rel=1e-9)  # jump 6 / 3! times spread^3
    inner = torch.arange(4, len(t) - 4)
    others = inner[(inner != j) & torch.isfinite(score[inner])]
    assert float(score[others].max()) < 1e-12
    kept = removed_by(score, t, 3, 3)
    assert 0.05 in kept.tolist() and bool(torch.isclose(kept, torch.tensor(0.2, dtype=torch.float64)).any())


def test_density_knots_are_quantiles_of_the_indicator():
    knots = uniform_knots(torch.tensor([0.0]), torch.tensor([0.25]), 4, 3)[0].double()  # interior [0, 1]
    flat = torch.ones(10, dtype=torch.float64) * torch.diff(knots)
    assert torch.allclose(density_knots(flat, knots, 3, 0.2), knots)  # a uniform density keeps uniform knots
    eta = torch.zeros(10, dtype=torch.float64)
    eta[3] = 1.0  # all the mass in [0, 0.25]
    moved = density_knots(eta, knots, 3, 0.0)
    assert torch.allclose(moved[4:7], torch.tensor([1, 2, 3], dtype=torch.float64) / 16)
    mixed = density_knots(eta, knots, 3, 0.5)  # half uniform: cdf(x) = 0.5 x + 0.5 min(4x, 1)
    assert mixed[4] == pytest.approx(0.1) and mixed[6] == pytest.approx(0.5)
    assert torch.equal(mixed[:4], knots[:4]) and torch.equal(mixed[-4:], knots[-4:])
    half = density_knots(eta, knots, 3, 0.0, relax=0.5)  # half of the way from 1/4, 2/4, 3/4 to 1/16, 2/16, 3/16
    assert torch.allclose(half[4:7], torch.tensor([5, 10, 15], dtype=torch.float64) / 32)
    assert torch.equal(half[:4], knots[:4]) and bool((half.diff() > 0).all())
    with pytest.raises(ValueError, match=r"trainer.knots.relax must be a finite number in \(0, 1\], got 0"):
        Trainer(knots={"method": "density", "relax": 0})


@pytest.mark.parametrize("method", ["insert", "move", "density"])
def test_knot_changes_in_training(f64, poisson, method):
    follow = method == "insert"  # without covering the inputs, move and density keep the knot count
    settings = dict(optimizer="adam", lr=1e-2, knots={"method": method, "every": 4, "insert": 2, "follow": follow})
    result, model, probe = _train(poisson, settings)
    steps = [s for s in range(4, 12, 4)]
    assert model.free_knots
    for s in steps:
        change = (probe.after[s] - probe.before[s]).abs().max()
        if method == "insert":  # Boehm: the network is the same function, on the whole line
            assert change < 1e-12 * probe.before[s].abs().max()
        else:  # a least-squares refit: it moves, but only a little
            assert 0 < change < 0.2 * probe.before[s].abs().max()
    grids = result.history["grid"]
    if method == "insert":
        assert grids[-1] > grids[0]
    else:
        assert set(grids) == {5} and model.n_params() == 80
    assert all(math.isnan(v) for v in result.history["knot_indicator"][:4])
    assert all(v > 0 for v in result.history["knot_indicator"][4:])


def test_no_change_from_step_until_on(f64, poisson):
    settings = dict(optimizer="adam", lr=1e-2, knots={"method": "insert", "every": 3, "insert": 1, "until": 7, "follow": False})
    _, model, probe = _train(poisson, settings)
    assert _changes(probe) == [3, 6] and model.grid == 7


def test_a_zero_indicator_changes_nothing(f64, poisson, monkeypatch):
    monkeypatch.setattr(type(poisson), "pde_pointwise", lambda self, model, x, derivatives: torch.zeros(x.shape[0]))
    _, model, probe = _train(poisson, dict(optimizer="adam", lr=1e-2, knots={"method": "insert", "every": 4}))
    assert not model.free_knots and _changes(probe) == []


def test_insert_stops_at_the_budget(f64, poisson):
    # [1, 4, 1]: 8 edges, (5 + 3 + 2) · 8 = 80 parameters, 8 more per interval
    settings = dict(optimizer="adam", lr=1e-2, knots={"method": "insert", "every": 2, "insert": 2, "budget": 100, "follow": False})
    result, model, _ = _train(poisson, settings)
    assert model.n_params() == 96 and model.grid == 7  # 2 then 0 intervals (a third would exceed 100)
    with pytest.raises(ValueError, match="trainer.knots.budget=50 is below the model's 80 parameters"):
        _train(poisson, dict(settings, knots=dict(settings["knots"], budget=50)))


def test_knot_insertion_extension_keeps_the_function_where_a_refit_does_not(f64, poisson):
    results = {}
    for method in ("refit", "insert"):
        settings = dict(optimizer="adam", lr=5e-2, grid_extension={"at": [6], "grids": [10], "method": method})
        _, model, probe = _train(poisson, settings)
        results[method] = (probe.after[6] - probe.before[6]).abs().max() / probe.before[6].abs().max()
        assert model.grid == 10
    assert results["insert"] < 1e-13
    assert results["refit"] > 1e-6  # the uniform refit changes the function on the padding (|x| > 1 here)


def test_follow_grows_hidden_ranges_to_their_inputs_exactly(f64, poisson):
    settings = dict(optimizer="adam", lr=5e-2, grid_update="follow", grid_extension={"at": [6], "grids": [10]})
    _, model, probe = _train(poisson, settings)
    assert (probe.after[6] - probe.before[6]).abs().max() < 1e-12 * probe.before[6].abs().max()
    seen = model.layer_inputs(poisson.sample_points(0)["pde"]["x"].double())
    lo, hi = model.layers[1].grid_ranges()
    assert bool((lo <= seen[1].min(0).values).all() and (hi >= seen[1].max(0).values).all())
    assert model.grid >= 10 and len({layer.grid for layer in model.layers}) == 1


def test_bad_knot_settings_are_refused_naming_the_field(f64, poisson):
    with pytest.raises(ValueError, match="trainer.knots.method must be one of"):
        TrainerConfig(knots={"method": "refine"})
    with pytest.raises(ValueError, match="trainer.knots.indicator must be one of"):
        TrainerConfig(knots={"method": "insert", "indicator": "error"})
    with pytest.raises(ValueError, match="trainer.knots.every must be an integer >= 1"):
        TrainerConfig(knots={"method": "insert", "every": 0})
    with pytest.raises(ValueError, match="trainer.grid_extension.method must be one of"):
        TrainerConfig(grid_extension={"at": [2], "grids": [10], "method": "boehm"})
    with pytest.raises(ValueError, match="trainer.knots takes"):
        TrainerConfig(knots={"methd": "insert"})
    torch.manual_seed(0)
    mlp = MLP([1, 8, 1], bounds=([-1.0], [1.0])).double()
    points = poisson.sample_points(0)
    with pytest.raises(ValueError, match="trainer.knots.method=insert needs a KAN with B-spline edges.*MLP"):
        Trainer(steps=4, progress=False, knots={"method": "insert"}).fit(poisson, mlp, points)
    cheb = KAN([1, 3, 1], grid=5, bounds=([-1.0], [1.0]), basis="chebyshev").double()
    with pytest.raises(ValueError, match="grid_extension.method=insert needs B-spline edges"):
        Trainer(steps=4, progress=False, grid_extension={"at": [2], "grids": [10], "method": "insert"}).fit(poisson, cheb, points)


def test_exact_extension_settings_without_an_extension_are_named_in_a_note():
    kan = KAN([1, 3, 1], grid=5)
    for settings, name in [(dict(grid_update="follow"), "trainer.grid_update=follow"),
                           (dict(grid_extension={"at": [], "grids": [], "method": "insert"}), "trainer.grid_extension.method=insert")]:
        notes = Trainer(grid_extension=settings.get("grid_extension", {"at": [], "grids": []}),
                        grid_update=settings.get("grid_update", "none")).schedule_notes(kan)
        assert any(n.startswith(f"{name} acts at grid extensions, and none is scheduled") for n in notes), notes
    follow = Trainer(grid_update="follow", grid_extension={"at": [5], "grids": [10]}).schedule_notes(kan)
    assert not any("none is scheduled" in n for n in follow)


def test_adam_moments_follow_the_coefficients_through_a_knot_insertion(f64, poisson):
    """Boehm's insertion is linear: Adam's first moments, read as spline coefficients, must describe the same
    function on the new knots as on the old (and the step count carries on)."""

    def grab(state):
        layer = state.model.layers[0]
        st = state.optimizer.state.get(layer.coef, {})
        return (layer.knot_vector().clone(), st["exp_avg"].clone(), int(st["step"])) if st else None

    model, points = setup_kan(poisson, [1, 4, 1])
    moments = Snapshots(grab)
    Trainer(steps=6, optimizer="adam", lr=1e-2, progress=False, device="cpu", callbacks=[moments],
            knots={"method": "insert", "every": 4, "insert": 2, "follow": False}).fit(poisson, model, points)
    knots0, m0, n0 = moments.seen[(3, "end")]
    knots1, m1, n1 = moments.seen[(4, "start")]
    assert knots1.shape[1] == knots0.shape[1] + 2 and n1 == n0
    z = torch.linspace(-3, 3, 601, dtype=torch.float64).unsqueeze(1)
    before = torch.einsum("bim,imo->bio", knot_basis(z, knots0, 3), m0)
    after = torch.einsum("bim,imo->bio", knot_basis(z, knots1, 3), m1)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-14)


def test_a_scheduled_extension_below_the_grid_knots_reached_is_skipped(f64, poisson):
    """Knot insertion can pass a scheduled grid; the extension must then not refit the model to a coarser grid."""
    settings = dict(optimizer="adam", lr=1e-2, knots={"method": "insert", "every": 3, "insert": 4, "until": 4},
                    grid_extension={"at": [5], "grids": [8]})
    result, model, probe = _train(poisson, settings)
    grids = result.history["grid"]
    assert grids[3] == 9 and grids[-1] == 9 and all(b >= a for a, b in zip(grids, grids[1:]))
    assert model.free_knots and (probe.after[5] - probe.before[5]).abs().max() == 0


@pytest.mark.parametrize("keep", [True, False])
def test_a_knot_insertion_carries_the_quasi_newton_curvature_only_when_asked(f64, poisson, keep):
    """With ``trainer.knots.keep_curvature`` the optimiser after an exact insertion starts from the old H mapped
    through the insertion (M H Mᵀ, map_inverse_hessian), M recovered here from the knots alone (Boehm's insertion
    is the exact change of basis), and its update count goes on; without it, a fresh start."""
    from kanpde.training.quasi_newton import map_inverse_hessian

    def grab(state):
        st, params = _optimizer_state(state), state.optimizer.param_groups[0]["params"]
        return (None if st.get("H") is None else st["H"].clone(), st.get("updates"),
                [layer.knot_vector().clone() for layer in state.model.layers], [p.shape for p in params], state.optimizer)

    model, points = setup_kan(poisson, [1, 3, 1])
    watch = Snapshots(grab)
    Trainer(steps=6, optimizer="ssbroyden", progress=False, device="cpu", callbacks=[watch],
            knots={"method": "insert", "every": 4, "insert": 2, "follow": False, "keep_curvature": keep}).fit(poisson, model, points)
    H0, n0, knots0, shapes0, opt0 = watch.seen[(3, "end")]
    H1, n1, knots1, _, opt1 = watch.seen[(4, "start")]
    assert opt1 is not opt0 and knots1[0].shape[1] == knots0[0].shape[1] + 2 and H0 is not None and n0 >= 3
    if not keep:
        assert H1 is None
        return
    z = torch.linspace(-3, 3, 801, dtype=torch.float64).unsqueeze(1)
    maps = []
    for old, new in zip(knots0, knots1):
        Bo, Bn = knot_basis(z.expand(-1, old.shape[0]), old, 3), knot_basis(z.expand(-1, new.shape[0]), new, 3)
        P = torch.stack([torch.linalg.lstsq(Bn[:, i], Bo[:, i]).solution for i in range(old.shape[0])])
        torch.testing.assert_close(torch.einsum("bim,ima->bia", Bn, P), Bo, rtol=0, atol=1e-12)  # exact insertion
        maps.append(P)
    coef_positions = [i for i, s in enumerate(shapes0) if len(s) == 3]  # the layers' coefficients (in, K, out), in order
    assert len(coef_positions) == len(maps)
    per_param = [None] * len(shapes0)
    for position, P in zip(coef_positions, maps):
        per_param[position] = P
    expected = map_inverse_hessian(H0, shapes0, per_param)
    torch.testing.assert_close(H1, expected, rtol=1e-9, atol=1e-12)
    assert n1 == n0


def test_keep_curvature_through_knot_changes_needs_a_dense_quasi_newton_method():
    with pytest.raises(ValueError, match=r"trainer.knots.keep_curvature=true needs a dense quasi-Newton optimiser .* got trainer.optimizer=adam_lbfgs"):
        Trainer(optimizer="adam_lbfgs", adam_steps=2, steps=4, knots={"method": "move", "keep_curvature": True})
    with pytest.raises(ValueError, match=r"trainer.grid_extension.keep_curvature=true needs a dense quasi-Newton optimiser .* got trainer.optimizer=adam"):
        Trainer(optimizer="adam", steps=4, grid_extension={"at": [2], "grids": [10], "keep_curvature": True})
    with pytest.raises(ValueError, match="trainer.knots.keep_curvature must be true or false"):
        Trainer(optimizer="ssbroyden", knots={"method": "move", "keep_curvature": "yes"})


@pytest.mark.parametrize("keep", [True, False])
def test_a_grid_extension_keeps_the_quasi_newton_curvature_only_when_asked(f64, poisson, keep):
    """``trainer.grid_extension.keep_curvature``: the optimiser after the extension starts from the old H mapped
    into the finer grid's parameters (n' x n'), not afresh; the insertion keeps the function, so the loss does not jump."""
    model, points = setup_kan(poisson, [1, 3, 1])
    watch = Snapshots(lambda state: (_optimizer_state(state).get("H"),))
    result = Trainer(steps=6, optimizer="ssbroyden", progress=False, device="cpu", callbacks=[watch], log_every=1,
                     grid_extension={"at": [4], "grids": [10], "method": "insert", "keep_curvature": keep}).fit(poisson, model, points)
    n_after = sum(p.numel() for p in model.parameters())
    H = {step: kept[0] for (step, when), kept in watch.seen.items() if when == "start"}
    assert result.history["grid"][-1] == 10 and H[3] is not None and H[3].shape[0] < n_after
    if keep:
        assert H[4].shape == (n_after, n_after)
    else:
        assert H[4] is None


def test_knots_change_inside_a_hard_constraint_wrapper(f64):
    """Hard constraints wrap the KAN (u = lift + distance * KAN); adaptive knots act on the KAN inside, and only its
    knots move (the wrapper holds none)."""
    from kanpde.problems.heat import Diffusion1D

    problem = Diffusion1D(n_interior=200, hard_constraints=True)
    torch.manual_seed(0)
    net = KAN([2, 3, 1], grid=6)
    model = problem.constrain(net)
    assert model is not net
    before = net.layers[0].knot_vector().clone()
    result = Trainer(steps=9, optimizer="ssbroyden", progress=False, device="cpu", log_every=1,
                     knots={"method": "density", "indicator": "curvature", "every": 4, "relax": 0.5, "keep_curvature": True}
                     ).fit(problem, model, problem.sample_points(0))
    assert result.status == "ok" and net.free_knots and net.grid == 6
    assert not torch.equal(net.layers[0].knot_vector(), before)
    with pytest.raises(ValueError, match="trainer.knots.method=move needs a KAN with B-spline edges \\(knots\\), got MLP"):
        Trainer(knots={"method": "move"}).fit(problem, problem.constrain(MLP([2, 4, 1])), problem.sample_points(0))


def test_move_by_jump_keeps_the_new_knots_and_changes_the_function_less(f64, poisson):
    changes, knots = {}, {}
    for removal in ("indicator", "jump"):
        settings = dict(optimizer="adam", lr=1e-2, knots={"method": "move", "every": 4, "until": 5, "removal": removal})
        _, model, probe = _train(poisson, settings, steps=6)
        changes[removal] = float((probe.after[4] - probe.before[4]).abs().max() / probe.before[4].abs().max())
        knots[removal] = model.layers[0].knots[0]
        assert model.grid == 5 and model.n_params() == 80
    uniform = uniform_knots(torch.tensor([-1.0]), torch.tensor([0.4]), 5, 3)[0].double()
    assert not torch.allclose(knots["jump"], uniform)  # knots did move: the inserted ones were not the ones to leave
    assert 0 < changes["jump"] < changes["indicator"]
    with pytest.raises(ValueError, match="trainer.knots.removal must be one of indicator, jump"):
        TrainerConfig(knots={"method": "move", "removal": "smallest"})
    with pytest.raises(ValueError, match="trainer.knots.removal=jump applies to trainer.knots.method=move only"):
        TrainerConfig(knots={"method": "density", "removal": "jump"})


class AtStep(Callback):
    """Calls ``act(state)`` at the start of step ``step`` and keeps what it returns."""

    def __init__(self, step, act) -> None:
        self.step, self.act, self.out = step, act, None

    def on_step_start(self, state) -> None:
        if state.step == self.step:
            self.out = self.act(state)


def test_knot_gradient_matches_finite_differences_of_the_loss(f64, poisson):
    model, points = setup_kan(poisson, [1, 4, 1])
    model.use_free_knots()

    def check(state):
        loss, grads = knot_gradient(state, model)
        assert loss == pytest.approx(float(plain_loss(state, state.model, "forward")), rel=1e-12)
        out = []
        for layer_index, j in ((0, 5), (0, 6), (1, 4), (1, 7)):
            layer, eps = model.layers[layer_index], 1e-6
            knots = layer.knots
            fd = []
            for sign in (1, -1):
                bumped = knots.clone()
                bumped[0, j] += sign * eps  # input 0 of the layer
                layer.knots = bumped
                with torch.no_grad():
                    fd.append(float(plain_loss(state, state.model, "forward")))
            layer.knots = knots
            out.append((float(grads[layer_index][0, j]), (fd[0] - fd[1]) / (2 * eps)))
        return out

    probe = AtStep(3, check)
    Trainer(steps=4, optimizer="adam", lr=1e-2, progress=False, device="cpu", callbacks=[probe]).fit(poisson, model, points)
    for analytic, numeric in probe.out:
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert any(abs(a) > 1e-6 for a, _ in probe.out)


def test_descent_direction_keeps_the_knots_in_order_and_the_ends_still():
    knots = torch.tensor([[-4, -3, -2, -1, -0.5, 0, 1, 1.2, 2, 3, 4]], dtype=torch.float64)  # k = 3: interior [-1, 2]
    grad = torch.tensor([[9, 9, 9, 9, 5, -1, 3, -8, 9, 9, 9]], dtype=torch.float64)
    d = descent_direction(knots, grad, 3)
    assert torch.equal(d[0, :4], torch.zeros(4, dtype=torch.float64)) and torch.equal(d[0, -4:], torch.zeros(4, dtype=torch.float64))
    assert bool((d * grad <= 0).all()) and float((d * grad).sum()) < 0  # against the gradient
    gap = knots.diff(dim=1)
    room = torch.minimum(gap[:, :-1], gap[:, 1:])[0]
    assert float((d[0, 1:-1].abs() / room).max()) == pytest.approx(0.45)
    assert bool(((knots + d).diff(dim=1) > 0).all())
    assert torch.equal(descent_direction(knots, torch.zeros_like(grad), 3), torch.zeros_like(knots))


def test_descend_lowers_the_loss_at_each_change_and_keeps_the_coefficients(f64, poisson):
    seen = {}

    def grab(state):
        layer = kan_of(state.model).layers[0]
        return layer.knots.clone(), layer.coef.detach().clone(), float(plain_loss(state, state.model, "forward"))

    snaps = Snapshots(lambda state: grab(state) if state.step in (3, 4) else None)
    model, points = setup_kan(poisson, [1, 4, 1])
    result = Trainer(steps=6, optimizer="adam", lr=1e-2, log_every=1, progress=False, device="cpu", callbacks=[snaps],
                     knots={"method": "descend", "every": 4, "descent_steps": 3}).fit(poisson, model, points)
    (k_end, c_end, l_end), (k_new, c_new, l_new) = snaps.seen[(3, "end")], snaps.seen[(4, "start")]
    assert torch.equal(c_end, c_new)  # the coefficients stay; only the knots moved
    assert not torch.equal(k_end, k_new) and torch.equal(k_end[:, :4], k_new[:, :4]) and torch.equal(k_end[:, -4:], k_new[:, -4:])
    assert l_new < l_end
    assert result.history["knot_indicator"][4] == pytest.approx(l_end - l_new, rel=1e-9)
    assert model.grid == 5 and model.n_params() == 80
    with pytest.raises(ValueError, match="trainer.knots.descent_steps must be an integer >= 1"):
        TrainerConfig(knots={"method": "descend", "descent_steps": 0})
    with pytest.raises(ValueError, match="trainer.knots.descent_steps=3 applies to trainer.knots.method=descend only"):
        TrainerConfig(knots={"method": "move", "descent_steps": 3})
