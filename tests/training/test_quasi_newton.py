"""The dense quasi-Newton family: secant condition, quadratic termination, convergence, training."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from kanpde import KAN, MLP, Trainer
from kanpde.training.callbacks.base import Callback
from kanpde.problems.poisson import Poisson1D
from kanpde.training.quasi_newton import METHODS, QuasiNewton, map_inverse_hessian, scaling, symmetrize_, update_inverse_hessian


def _spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64), g


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("first", [True, False])
def test_every_update_meets_the_secant_condition_and_stays_positive_definite(method, first):
    H, g = _spd(7, 1)
    A, _ = _spd(7, 2)
    for _ in range(5):
        grad = torch.randn(7, generator=g, dtype=torch.float64)
        alpha = 0.7
        s = -alpha * (H @ grad)
        y = A @ s  # a convex quadratic's change of gradient: yᵀs > 0
        assert update_inverse_hessian(H, s, y, grad, alpha, method, first)
        torch.testing.assert_close(H @ y, s, rtol=1e-10, atol=1e-12)
        assert torch.linalg.eigvalsh(H).min() > 0
        torch.testing.assert_close(H, H.T, rtol=0, atol=1e-14 * float(H.abs().max()))  # symmetric to round-off
    symmetrize_(H)
    torch.testing.assert_close(H, H.T, rtol=0, atol=0)


def _dense_map(shapes, maps):
    """The flat matrix M of a parameter change, built entry by entry: identity blocks, and for KAN
    coefficients (in, K, out) the entries M[(i, a, o), (i, b, o)] = P[i, a, b]."""
    blocks = []
    for shape, P in zip(shapes, maps):
        n = math.prod(shape)
        if P is None:
            blocks.append(torch.eye(n, dtype=torch.float64))
            continue
        n_in, K, n_out = shape
        M = torch.zeros(n_in * P.shape[1] * n_out, n, dtype=torch.float64)
        for i in range(n_in):
            for a in range(P.shape[1]):
                for b in range(K):
                    for o in range(n_out):
                        M[(i * P.shape[1] + a) * n_out + o, (i * K + b) * n_out + o] = P[i, a, b]
        blocks.append(M)
    return torch.block_diag(*blocks)


@pytest.mark.parametrize("added", [0, 3])
def test_a_mapped_inverse_hessian_meets_the_secant_condition_in_the_new_coordinates(added):
    """Parameters c' = M c (a knot move: P square; an insertion: P taller than wide). A secant pair (s, y) of H
    becomes (M s, M⁺ᵀ y), since the loss in c' is the old loss at M⁺c' and its gradient M⁺ᵀ g; the mapped H must
    meet it, be M H Mᵀ (checked against a dense M), and stay symmetric positive definite."""
    shapes = [torch.Size([3]), torch.Size([2, 5, 3]), torch.Size([4])]
    g = torch.Generator().manual_seed(7)
    P = torch.randn(2, 5 + added, 5, generator=g, dtype=torch.float64) + 2 * torch.eye(5 + added, 5, dtype=torch.float64)
    maps = [None, P, None]
    H, _ = _spd(sum(math.prod(s) for s in shapes), 3)
    new = map_inverse_hessian(H, shapes, maps)
    M = _dense_map(shapes, maps)
    y = torch.randn(H.shape[0], generator=g, dtype=torch.float64)
    torch.testing.assert_close(new @ (torch.linalg.pinv(M).T @ y), M @ (H @ y), rtol=1e-10, atol=1e-10)
    if added == 0:
        torch.testing.assert_close(new, M @ H @ M.T, rtol=1e-12, atol=1e-12)
    else:  # on the range of M it is M H Mᵀ; beyond it, the mean curvature tr(H)/n
        Pi = M @ torch.linalg.pinv(M)
        torch.testing.assert_close(Pi @ new @ Pi, M @ H @ M.T, rtol=1e-10, atol=1e-10)
        complement = torch.eye(M.shape[0], dtype=torch.float64) - Pi
        torch.testing.assert_close(complement @ new @ complement, complement * H.diagonal().mean(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(new, new.T, rtol=1e-12, atol=1e-12)
    assert torch.linalg.eigvalsh(new).min() > 0
    assert torch.equal(map_inverse_hessian(H, shapes, [None, None, None]), H)
    with pytest.raises(ValueError, match="H has shape"):
        map_inverse_hessian(H[:-1, :-1], shapes, maps)


@pytest.mark.parametrize("method", METHODS)
def test_the_rank_two_update_equals_the_textbook_formula(method):
    """H/τ + U M Uᵀ is (H − Hy Hyᵀ/yᵀHy + φ·yᵀHy·v vᵀ)/τ + s sᵀ/yᵀs, v = s/yᵀs − Hy/yᵀHy, written out."""
    H, g = _spd(9, 4)
    A, _ = _spd(9, 5)
    grad = torch.randn(9, generator=g, dtype=torch.float64)
    alpha = 0.3
    s = -alpha * (H @ grad)
    y = A @ s
    sy, Hy = float(s @ y), H @ y
    yHy = float(y @ Hy)
    tau, phi = scaling(method, -alpha * float(s @ grad) / sy, yHy / sy, 9, False)
    v = s / sy - Hy / yHy
    textbook = (H - torch.outer(Hy, Hy) / yHy + phi * yHy * torch.outer(v, v)) / tau + torch.outer(s, s) / sy
    assert update_inverse_hessian(H, s, y, grad, alpha, method, False)
    torch.testing.assert_close(H, textbook, rtol=1e-12, atol=1e-12)


def test_bfgs_is_the_unscaled_member_and_ssbfgs_scales_down_only():
    assert scaling("bfgs", 3.0, 2.0, 10, False) == (1.0, 1.0)
    assert scaling("ssbfgs", 4.0, 2.0, 10, False) == (0.25, 1.0)
    assert scaling("ssbfgs", 0.5, 2.0, 10, False) == (1.0, 1.0)
    # b·h = 1 (H already exact along s): SSBroyden is BFGS (φ = 1)
    assert scaling("ssbroyden", 2.0, 0.5, 10, False)[1] == pytest.approx(1.0)


def test_a_step_without_positive_curvature_leaves_h_unchanged():
    H = torch.eye(3, dtype=torch.float64)
    s = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert not update_inverse_hessian(H, s, -s, -s, 1.0)
    torch.testing.assert_close(H, torch.eye(3, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_exact_line_searches_minimise_a_quadratic_in_n_steps(method):
    """With exact line searches every member of the Broyden family ends at the minimiser of a
    strictly convex quadratic ½xᵀAx − bᵀx after n steps (conjugate directions)."""
    n = 8
    A, g = _spd(n, 3)
    A = A / A.diagonal().mean() + torch.diag(torch.logspace(0, 2, n, dtype=torch.float64))  # condition ~1e2
    b = torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.zeros(n, dtype=torch.float64)
    H = torch.eye(n, dtype=torch.float64)
    for k in range(n):
        grad = A @ x - b
        p = -(H @ grad)
        alpha = float(-(grad @ p) / (p @ A @ p))
        s = alpha * p
        x = x + s
        update_inverse_hessian(H, s, A @ s, grad, alpha, method, first=k == 0)
    exact = torch.linalg.solve(A, b)
    torch.testing.assert_close(x, exact, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_the_optimiser_solves_rosenbrock_to_round_off(method):
    x = torch.tensor([-1.2, 1.0, -1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method=method)

    def closure():
        opt.zero_grad()
        f = (100 * (x[1::2] - x[::2] ** 2) ** 2 + (1 - x[::2]) ** 2).sum()
        f.backward()
        return f

    for _ in range(200):
        f = float(opt.step(closure).detach())
        if f < 1e-20:
            break
    torch.testing.assert_close(x.detach(), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-8)


def test_state_dict_round_trip_continues_the_same_iterates():
    def make():
        x = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
        return x, QuasiNewton([x])

    def closure_for(x, opt):
        def closure():
            opt.zero_grad()
            f = 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2
            f.backward()
            return f
        return closure

    x, opt = make()
    for _ in range(5):
        opt.step(closure_for(x, opt))
    saved, x_saved = copy.deepcopy(opt.state_dict()), x.detach().clone()
    for _ in range(5):
        opt.step(closure_for(x, opt))
    x2, opt2 = make()
    with torch.no_grad():
        x2.copy_(x_saved)
    opt2.load_state_dict(saved)
    for _ in range(5):
        opt2.step(closure_for(x2, opt2))
    torch.testing.assert_close(x2, x, rtol=0, atol=0)


def test_a_fresh_start_at_a_small_loss_on_a_stiff_problem_still_descends():
    """A quadratic with curvatures 1 to 1e8 at loss 0.05: the old fresh start, a trial step −g/|g|₁, is about
    1e4 times too long, and SciPy's search could not shrink it that far, so every step failed (as on poisson2d
    at G = 96; measured).  Polyak's bound f/|g|² on the fresh start gives a step that descends."""
    torch.manual_seed(0)
    lam = torch.logspace(0, 8, 200, dtype=torch.float64)
    x = (1e-5 * torch.randn(200, dtype=torch.float64)).requires_grad_()
    opt = QuasiNewton([x], method="ssbroyden")

    def closure():
        opt.zero_grad()
        f = 0.5 * (lam * x * x).sum()
        f.backward()
        return f

    f0 = float(closure())
    g = x.grad.clone()
    assert f0 / float(g @ g) < 1e-4 / float(g.abs().sum())  # Polyak's bound is the one that binds
    assert torch.allclose(opt._initial(g, {}, f0).diagonal(), torch.full((200,), f0 / float(g @ g), dtype=torch.float64))
    for _ in range(3):
        opt.step(closure)
    assert float(closure()) < f0 / 5


def test_a_fresh_start_just_above_a_loss_floor_backtracks_where_the_wolfe_search_gives_up(caplog):
    """f = 4e-8 + ½ Σ λ_i x_i² with λ ~ 1e5 and x ~ 1e-9: Polyak's bound f/|g|² ≈ 1e4/λ² is no bound here (the floor is
    not 0), the trial step overshoots the minimum along −g about 1e5-fold and SciPy's zoom gives up (measured: every
    step failed, as on poisson2d at G = 48 from loss 4.3e-8).  Backtracking on sufficient decrease finds the step."""
    lam = torch.tensor([1e5, 5e4, 3e4, 2.5e4], dtype=torch.float64)
    x = torch.full((4,), 1e-9, dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method="ssbroyden")

    def closure():
        opt.zero_grad()
        f = 4e-8 + 0.5 * (lam * x * x).sum()
        f.backward()
        return f

    excess = float(closure().detach()) - 4e-8
    with caplog.at_level("WARNING", logger="kanpde"):
        for _ in range(3):
            opt.step(closure)
    assert float(closure().detach()) - 4e-8 < excess / 1000
    assert not [r for r in caplog.records if "line search found no acceptable step" in r.getMessage()]


def test_a_step_that_cannot_descend_leaves_the_parameters_and_warns_once(caplog):
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = QuasiNewton([x], method="bfgs")

    def lying_closure():  # the gradient's sign is wrong, so no step along −H g lowers the loss
        opt.zero_grad()
        f = (x * x).sum()
        (-f).backward()
        return f

    with caplog.at_level("WARNING", logger="kanpde"):
        for _ in range(3):
            opt.step(lying_closure)
    assert x.tolist() == [1.0, -2.0]
    warnings = [r.getMessage() for r in caplog.records if "line search found no acceptable step" in r.getMessage()]
    assert len(warnings) == 1 and "bfgs" in warnings[0]


def test_bad_settings_name_the_setting():
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="method must be one of bfgs, ssbfgs, ssbroyden"):
        QuasiNewton([x], method="newton")
    with pytest.raises(ValueError, match="dense 20001 x 20001 inverse Hessian.*use lbfgs"):
        QuasiNewton([torch.zeros(20001, requires_grad=True)])
    with pytest.raises(ValueError, match="trainer.adam_steps must lie strictly between 0 and trainer.steps=10 for adam_ssbroyden"):
        Trainer(optimizer="adam_ssbroyden", steps=10)
    with pytest.raises(ValueError, match="trainer.optimizer"):
        Trainer(optimizer="ssbroyd")


def test_a_network_too_large_for_the_dense_method_is_refused_before_training():
    """The default optimiser is dense: a model over 20,000 parameters, now or after its grid extensions,
    is refused by the trainer's checks (before any step) with the setting to change; lbfgs takes it."""
    problem = Poisson1D(n_interior=8)
    big_mlp = MLP([1, 150, 129, 1])  # 19,909 parameters: allowed
    Trainer(steps=2).check_model(big_mlp)
    with pytest.raises(ValueError, match=r"trainer.optimizer=ssbroyden keeps a dense .* this model reaches 20,061.*trainer.optimizer=lbfgs"):
        Trainer(steps=2).check_model(MLP([1, 150, 130, 1]))
    kan = KAN([1, 30, 30, 1], grid=5)  # 960 edges, 9,600 parameters at G = 5 and 28,800 at G = 25
    grown = {"at": [1], "grids": [25]}
    with pytest.raises(ValueError, match=r"trainer.optimizer=adam_ssbroyden .* reaches 28,800"):
        Trainer(steps=4, optimizer="adam_ssbroyden", adam_steps=2, grid_extension=grown).check_model(kan)
    Trainer(steps=4, optimizer="adam_lbfgs", adam_steps=2, grid_extension=grown).check_model(kan)
    Trainer(steps=1, grid_extension=grown).check_model(kan)  # the extension falls after the last step
    with pytest.raises(ValueError, match="reaches 20,061"):
        Trainer(steps=2).fit(problem, MLP([1, 150, 130, 1]), problem.sample_points(0))


def test_ssbroyden_trains_a_pinn_far_below_lbfgs_on_the_same_budget(f64):
    """u'' = f on [-1, 1] with an MLP [1, 10, 10, 1] (141 parameters), 300 steps each: the error is
    bounded by the 100 points, so the comparison is on the loss (measured: 2.8e-6 against 2.3e-8)."""
    errors, losses = {}, {}
    for optimizer in ("lbfgs", "ssbroyden"):
        problem = Poisson1D(n_interior=100)
        torch.manual_seed(0)
        model = MLP([1, 10, 10, 1], bounds=([-1.0], [1.0]))
        result = Trainer(optimizer=optimizer, steps=300, progress=False, log_every=50).fit(
            problem, model, problem.sample_points(0), problem.eval_points())
        x = problem.eval_points()
        errors[optimizer] = float((model(x) - problem.exact(x)).norm() / problem.exact(x).norm())
        losses[optimizer] = result.history["loss"][-1]
        assert result.status == "ok" and math.isfinite(errors[optimizer])
    assert errors["ssbroyden"] < 2e-5
    assert losses["ssbroyden"] < losses["lbfgs"] / 30


class _CountEvaluations(Callback):
    """Counts loss evaluations (every one pipes the squares through ``on_squares``)."""

    def __init__(self, changes_objective: bool) -> None:
        self.changes_objective = changes_objective
        self.evaluations = 0

    def on_squares(self, state, squares):
        self.evaluations += 1
        return squares


def _runs_with_and_without_reuse(make_model, **settings):
    """(history, parameters, evaluations) of the same run with reuse possible (False) and turned off (True)."""
    runs = {}
    for changes in (False, True):
        problem = Poisson1D(n_interior=50)
        torch.manual_seed(0)
        model = make_model()
        counter = _CountEvaluations(changes)
        result = Trainer(steps=40, progress=False, log_every=1, callbacks=[counter], **settings).fit(
            problem, model, problem.sample_points(0))
        runs[changes] = ({k: v for k, v in result.history.items() if k != "time_s"},
                         [p.detach().clone() for p in model.parameters()], counter.evaluations)
    return runs[False], runs[True]


@pytest.mark.parametrize("optimizer", ["ssbroyden", "lbfgs"])
def test_a_step_reuses_the_last_evaluation_only_while_the_objective_stays_the_same(f64, optimizer):
    """Each second-order step starts where the last line search ended; with only passive callbacks that point is
    not evaluated again, and the run is bit-for-bit the run that evaluates it again (a callback that may change
    the objective turns reuse off)."""
    (h_reuse, p_reuse, n_reuse), (h_fresh, p_fresh, n_fresh) = _runs_with_and_without_reuse(
        lambda: MLP([1, 8, 8, 1], bounds=([-1.0], [1.0])), optimizer=optimizer)
    assert h_reuse == h_fresh
    for a, b in zip(p_reuse, p_fresh):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert n_fresh - n_reuse >= 35  # one evaluation fewer in (nearly) every step after the first


@pytest.mark.parametrize("keep", [True, False])
def test_knot_changes_keep_reuse_because_each_change_starts_another_optimiser(f64, keep):
    """Knot moves change the objective only together with the optimiser (the evaluation kept belongs to the old
    one), so a run with knot changes may reuse evaluations between them and stays bit-for-bit the same."""
    (h_reuse, p_reuse, n_reuse), (h_fresh, p_fresh, n_fresh) = _runs_with_and_without_reuse(
        lambda: KAN([1, 4, 1], grid=6), optimizer="ssbroyden", grid_extension={"at": [], "grids": []},
        knots={"method": "move", "every": 10, "keep_curvature": keep})
    assert h_reuse == h_fresh and len(set(h_reuse["grid"])) == 1 and len(h_reuse["loss"]) == 40
    for a, b in zip(p_reuse, p_fresh):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert n_fresh - n_reuse >= 30  # every step but the first and the three after a change


def test_reuse_is_off_with_residual_attention(f64):
    """RBA reweighs the points after every step, so the step's first evaluation is a new one."""
    problem = Poisson1D(n_interior=50)
    counter = _CountEvaluations(False)
    trainer = Trainer(steps=10, progress=False, callbacks=[counter], loss={"rba": True})
    assert not trainer.all_callbacks().static_objective
    torch.manual_seed(0)
    trainer.fit(problem, MLP([1, 8, 8, 1], bounds=([-1.0], [1.0])), problem.sample_points(0))
    assert counter.evaluations >= 20
