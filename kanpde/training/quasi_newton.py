"""Full-memory quasi-Newton optimisers for small networks: BFGS, self-scaled BFGS and self-scaled Broyden.

A network of a few thousand parameters keeps a dense inverse-Hessian approximation H (n × n) cheaply,
and in float64 the self-scaled members of the Broyden family reach losses far below L-BFGS on PINN
problems (Urbán, Stefanou & Pons 2025, "Unveiling the optimization process of physics-informed neural
networks"; Kiyani et al. 2025).  Each update is

    H+ = (H − H y yᵀH / yᵀHy + φ · yᵀHy · v vᵀ) / τ + s sᵀ / yᵀs,    v = s / yᵀs − H y / yᵀHy,

with s the step, y the change of gradient; φ = 1, τ = 1 is BFGS.  ``ssbfgs`` scales by
τ = min(1, 1/b) (Al-Baali 1998), b = −α sᵀg / yᵀs = sᵀBs / yᵀs; ``ssbroyden`` also chooses φ
from the family each step (Al-Baali & Khalfan's rule, as Urbán et al. give it).  Every member
meets the secant condition H+ y = s.  The step length comes from SciPy's strong-Wolfe line search
(:func:`scipy.optimize.line_search`); only the updates are written here, since neither torch nor
SciPy offers the self-scaled family.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Callable

import numpy as np
import torch

log = logging.getLogger("kanpde")

METHODS = ("bfgs", "ssbfgs", "ssbroyden")
MAX_PARAMS = 20_000
"""Above this the dense H (n² numbers) stops being cheap: 20k parameters hold 3.2 GB in float64."""
SYMMETRIZE_EVERY = 64
"""Updates between two symmetrisations of H, so that round-off asymmetry cannot build up over long runs."""


def scaling(method: str, b: float, h: float, n: int, first: bool) -> tuple[float, float]:
    """(τ, φ) of the update for ``method`` from b = sᵀBs / yᵀs, h = yᵀHy / yᵀs and the dimension n.

    BFGS: (1, 1).  SSBFGS: (min(1, 1/b), 1).  SSBroyden: θ clipped to the interval that keeps H
    positive definite and well scaled, φ = (1 − θ)/(1 + aθ), a = bh − 1 (≥ 0 by Cauchy–Schwarz).
    """
    if method == "bfgs":
        return 1.0, 1.0
    if method == "ssbfgs":
        return min(1.0, 1.0 / b), 1.0
    a = b * h - 1.0
    if a <= 1e-14:  # H already maps y to s's scale: the family collapses to BFGS with Oren–Luenberger scaling
        theta = 0.0
    else:
        c = math.sqrt(a / (1.0 + a))
        rho_minus = min(1.0, h * (1.0 - c))
        theta_minus, theta_plus = (rho_minus - 1.0) / a, 1.0 / rho_minus
        theta = max(theta_minus, min(theta_plus, (1.0 - b) / b))
    sigma = 1.0 + a * theta
    if first:
        tau = h / sigma
    else:
        rho_k = min(1.0, 1.0 / b)
        sigma_n = abs(sigma) ** (1.0 / (1.0 - n)) if n > 1 else 1.0
        tau = min(rho_k * sigma_n, sigma) if theta <= 0 else rho_k * min(sigma_n, 1.0 / theta)
    return tau, (1.0 - theta) / sigma


def update_inverse_hessian(H: torch.Tensor, s: torch.Tensor, y: torch.Tensor, g: torch.Tensor, alpha: float,
                           method: str = "ssbroyden", first: bool = False) -> bool:
    """Update the inverse-Hessian approximation H in place after the step ``s = alpha · p`` from gradient ``g``;
    returns whether it changed.

    H: (n, n); s, y, g: (n,).  H stays as it is when the curvature yᵀs is not positive or the update
    is not finite, which keeps it positive definite.  The update lies in the span of s and Hy, so it is
    applied as H ← H/τ + U M Uᵀ with U = [s, Hy] (n × 2) and a 2 × 2 matrix M: one pass over H, where
    the textbook form's outer products take six (at n = 2,000 that was 40 % of a Burgers step).
    """
    sy = float(s @ y)
    if not sy > torch.finfo(H.dtype).eps * float(s.norm() * y.norm()):
        return False
    Hy = H @ y
    yHy = float(y @ Hy)
    if not yHy > 0:
        return False
    b = -alpha * float(s @ g) / sy
    tau, phi = scaling(method, b, yHy / sy, H.shape[0], first)
    # (H − Hy Hyᵀ/yHy + φ·yHy·v vᵀ)/τ + s sᵀ/sy with v = s/sy − Hy/yHy, expanded in s and Hy:
    a_ss = phi * yHy / (sy * sy * tau) + 1.0 / sy
    a_sh = -phi / (sy * tau)
    a_hh = (phi - 1.0) / (yHy * tau)
    if not all(math.isfinite(v) for v in (tau, phi, a_ss, a_sh, a_hh)) or not bool(torch.isfinite(Hy).all()):
        return False
    U = torch.stack([s, Hy], dim=1)
    M = torch.tensor([[a_ss, a_sh], [a_sh, a_hh]], dtype=H.dtype, device=H.device)
    H.addmm_(U @ M, U.T, beta=1.0 / tau)
    return True


def symmetrize_(H: torch.Tensor) -> None:
    """Make H exactly symmetric in place (the rank-two updates leave it symmetric only to round-off)."""
    H.copy_(0.5 * (H + H.T))


def map_inverse_hessian(H: torch.Tensor, shapes: list[torch.Size], maps: list[torch.Tensor | None]) -> torch.Tensor:
    """The inverse Hessian after a linear change of parameters c' = M c, as M H Mᵀ (+ γ on what M adds).

    H: (n, n) over the flattened parameters of ``shapes``; ``maps[j]`` is None for a parameter that stays,
    or P: (in, K', K) for KAN coefficients (in, K, out) whose axis 1 changes as P does (a knot change,
    :meth:`kanpde.models.edge.EdgeLayer.change_map`).  If the loss in the new parameters is the old loss
    at c = M⁺c' (exactly so for knot insertion, nearly so for a knot move's least-squares refit), its
    Hessian is M⁺ᵀ B M⁺, whose inverse on the range of M is M H Mᵀ.  Directions M does not reach (the
    coefficients of inserted knots beyond the old space) get γ = tr(H)/n, the mean curvature H holds,
    as a fresh start would give them a scaled identity.  Returns (n', n')."""
    sizes = [math.prod(shape) for shape in shapes]
    if H.shape != (sum(sizes), sum(sizes)):
        raise ValueError(f"H has shape {tuple(H.shape)}, the parameters {sum(sizes)} numbers")

    def rows(X: torch.Tensor) -> torch.Tensor:  # M X, X: (n, m)
        out = []
        for block, shape, P in zip(torch.split(X, sizes), shapes, maps):
            if P is None:
                out.append(block)
            else:
                mapped = P.to(X.dtype) @ block.reshape(shape[0], shape[1], -1)  # (in, K', out * m)
                out.append(mapped.reshape(-1, X.shape[1]))
        return torch.cat(out)

    new = rows(rows(H).T).T  # M (M H)ᵀ = M H Mᵀ, H symmetric
    gamma, offset = float(torch.diagonal(H).mean()), 0
    for shape, P in zip(shapes, maps):
        size = math.prod(shape) if P is None else P.shape[0] * P.shape[1] * shape[2]
        if P is not None and P.shape[1] > P.shape[2]:  # γ (I - P P⁺) on each input's coefficients, for every output
            P = P.to(H.dtype)
            C = torch.eye(P.shape[1], dtype=H.dtype, device=H.device) - P @ torch.linalg.pinv(P)
            eye_in, eye_out = (torch.eye(m, dtype=H.dtype, device=H.device) for m in (shape[0], shape[2]))
            block = torch.einsum("iab,ij,op->iaojbp", C, eye_in, eye_out).reshape(size, size)
            new[offset:offset + size, offset:offset + size] += gamma * block
        offset += size
    return new


class QuasiNewton(torch.optim.Optimizer):
    """Dense quasi-Newton steps (``bfgs``, ``ssbfgs`` or ``ssbroyden``) with a strong-Wolfe line search.

    Like :class:`torch.optim.LBFGS`, ``step(closure)`` takes one iteration; ``closure()`` zeroes the
    gradients, returns the loss and has called ``backward``.  The state (H, iteration count) lives in
    ``state_dict()``, so checkpoints resume exactly.  H starts as γ·I, γ = min(1, 1/|g|₁), so the first
    trial step is at most 1 long; a line search that finds no step along −Hg is tried once more from
    that start, then by backtracking (:meth:`_backtrack`), and if that fails too the step leaves the
    parameters where they were and the next step starts afresh.

    Args:
        params: the parameters (at most :data:`MAX_PARAMS` numbers in all).
        method: ``bfgs``, ``ssbfgs`` or ``ssbroyden``.
        c1, c2: the strong-Wolfe constants (sufficient decrease, curvature).
    """

    def __init__(self, params, method: str = "ssbroyden", c1: float = 1e-4, c2: float = 0.9) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"line search constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        super().__init__(params, {"method": method, "c1": c1, "c2": c2})
        if len(self.param_groups) != 1:
            raise ValueError("QuasiNewton takes one parameter group")
        self._params = self.param_groups[0]["params"]
        self._warned = False  # a step that found no descent has been logged
        n = sum(p.numel() for p in self._params)
        if n > MAX_PARAMS:
            raise ValueError(f"{method} keeps a dense {n} x {n} inverse Hessian; it is meant for networks of at most {MAX_PARAMS} "
                             f"parameters (this one has {n}); use lbfgs")

    @staticmethod
    def _initial(g: torch.Tensor, state: dict, f: float) -> torch.Tensor:
        """A fresh start: H0 = γ·I, γ = min(1, 1/|g|₁, f/|g|²).  The first bound keeps the first trial step at
        most 1 long (as torch's L-BFGS starts).  The second (Polyak's step) applies to a positive loss, which a
        sum of squares is: along −g the linear model reaches zero loss at that length, so a longer trial
        step only overshoots.  Late in training on a fine KAN grid (G = 96 on poisson2d) the first bound
        alone gave trial steps 10⁴ times too long, and SciPy's search failed to shrink that far."""
        state["updates"] = 0
        state.pop("previous_loss", None)
        g1, g2 = float(g.abs().sum()), float(g @ g)
        gamma = min(1.0, 1.0 / max(g1, 1e-300))
        if f > 0 and g2 > 0:
            gamma = min(gamma, f / g2)
        return torch.eye(g.numel(), dtype=g.dtype, device=g.device) * gamma

    @staticmethod
    def _backtrack(f: Callable[[np.ndarray], float], x0: np.ndarray, p: np.ndarray, f0: float, slope: float, c1: float,
                   tries: int = 60) -> float | None:
        """The fallback when SciPy's strong-Wolfe search finds nothing: the first step length from 1 down that
        lowers f by c1·α·slope (Armijo), each next trial at the minimiser of the quadratic through f0, the slope
        and f(α), kept within [α/10, α/2].  SciPy's zoom gives up when the trial step overshoots the minimum
        along p 10⁴-fold, as a fresh start near a loss floor does (γ ≤ f/|g|² assumes the floor is 0): on
        poisson2d at G = 48 every step then failed from loss 4.3e-8, where α = 1e-4 lowers it."""
        alpha = 1.0
        for _ in range(tries):
            fa = f(x0 + alpha * p)
            if fa < f0 and fa <= f0 + c1 * alpha * slope:  # strictly lower: a step lost in round-off is no step
                return alpha
            curvature = fa - f0 - slope * alpha
            q = -slope * alpha * alpha / (2.0 * curvature) if math.isfinite(fa) and curvature > 0 else 0.0
            alpha = min(0.5 * alpha, max(0.1 * alpha, q))
        return None

    def new_objective(self) -> None:
        """The loss changed but not its operator (the PDE points were redrawn): keep H, whose curvature still
        holds, and forget the previous loss, which the line search would take as this objective's."""
        self.state[self._params[0]].pop("previous_loss", None)

    def carry_curvature(self, old: "QuasiNewton", maps: list[torch.Tensor | None]) -> bool:
        """Start from ``old``'s H mapped through a linear change of the parameters (:func:`map_inverse_hessian`;
        ``maps[j]`` for ``old``'s parameter j) instead of afresh; its update count goes on, its previous loss
        (another objective's) does not.  False, changing nothing, when ``old`` had no H yet."""
        before = old.state[old._params[0]]
        if before.get("H") is None:
            return False
        H = map_inverse_hessian(before["H"], [p.shape for p in old._params], maps)
        n = sum(p.numel() for p in self._params)
        if H.shape != (n, n):
            raise ValueError(f"the mapped inverse Hessian has {H.shape[0]} rows, the parameters {n} numbers")
        state = self.state[self._params[0]]
        state["H"], state["updates"] = H, int(before.get("updates", 0))
        return True

    def _flat(self, grads: bool) -> torch.Tensor:
        parts = []
        for p in self._params:
            t = (p.grad if p.grad is not None else torch.zeros_like(p)) if grads else p.detach()
            parts.append(t.reshape(-1))
        return torch.cat(parts).detach().clone()

    def _assign(self, x: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self._params:
                p.copy_(x[offset: offset + p.numel()].view_as(p))
                offset += p.numel()

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """One iteration: direction −H g, a strong-Wolfe step along it, the update of H; returns the starting loss."""
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        with torch.enable_grad():
            loss = closure()
        f0 = float(loss.detach())
        if not math.isfinite(f0):
            return loss
        x0, g0 = self._flat(False), self._flat(True)
        H = state.get("H")
        cache: dict[str, object] = {}

        def evaluate(x: np.ndarray) -> tuple[float, np.ndarray]:
            if cache.get("x") is not None and np.array_equal(cache["x"], x):
                return cache["f"], cache["g"]  # type: ignore[return-value]
            self._assign(torch.as_tensor(x, dtype=x0.dtype, device=x0.device))
            with torch.enable_grad():
                f = float(closure().detach())
            g = self._flat(True).cpu().numpy()
            cache.update(x=x.copy(), f=f if math.isfinite(f) else math.inf, g=g)
            return cache["f"], g  # type: ignore[return-value]

        from scipy.optimize import line_search  # scipy.optimize is slow to import; only quasi-Newton runs need it

        x0_np, g0_np = x0.cpu().numpy(), g0.cpu().numpy()
        fresh = H is None
        if fresh:
            H = self._initial(g0, state, f0)
        while True:
            p = -(H @ g0)
            alpha = None
            if float(p @ g0) < 0:  # else H lost definiteness to round-off
                p_np = p.cpu().numpy()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "the line search did not converge": handled here
                    alpha = line_search(lambda x: evaluate(x)[0], lambda x: evaluate(x)[1], x0_np, p_np, gfk=g0_np,
                                        old_fval=f0, old_old_fval=state.get("previous_loss"), c1=group["c1"], c2=group["c2"])[0]
                if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
                    alpha = None
            if alpha is not None or fresh:
                break
            H, fresh = self._initial(g0, state, f0), True  # one more try from a fresh start
        if alpha is None and float(p @ g0) < 0:
            alpha = self._backtrack(lambda x: evaluate(x)[0], x0_np, p_np, f0, float(p @ g0), group["c1"])
        if alpha is None:
            self._assign(x0)
            state.clear()
            if not self._warned:  # the next step starts afresh from the same point: say so once
                self._warned = True
                log.warning(f"{group['method']}: the line search found no acceptable step from loss {f0:.6g}, even from a "
                            f"fresh start; the parameters are unchanged (once per optimiser: later failures are not repeated)")
            return loss
        _, g1_np = evaluate(x0_np + alpha * p_np)  # the accepted point, usually the last one evaluated
        s = alpha * p
        y = torch.as_tensor(g1_np, dtype=x0.dtype, device=x0.device) - g0
        first = int(state.get("updates", 0)) == 0
        updated = update_inverse_hessian(H, s, y, g0, float(alpha), group["method"], first)
        state["H"] = H
        state["updates"] = int(state.get("updates", 0)) + int(updated)
        if updated and state["updates"] % SYMMETRIZE_EVERY == 0:
            symmetrize_(H)
        state["previous_loss"] = f0
        return loss
