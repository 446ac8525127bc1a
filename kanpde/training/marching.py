"""Time-marching: the time range cut into windows, trained one after another (Wight & Zhao 2020;
Krishnapriyan et al. 2021's sequence-to-sequence learning; bc-PINN, Mattey & Ghosh 2022).

Window w = [a_w, b_w] has its own network N_w, and on it

    u(x, t) = base_w(x) + (t − a_w)/(b_w − a_w) · N_w(x, t),

with base_0 the problem's initial value and base_w = u(x, a_w) of the windows before: each window
starts exactly where the previous one ended, for any weights.  N_w starts from N_{w−1}'s weights
(transfer; ``trainer.marching.transfer=false`` starts each from a fresh initialisation instead), and
is frozen once its window is trained.  An initial rate (a wave's u_t(x, t0)) stays
a loss term; in later windows its target is the previous window's u_t at a_w.  The other conditions
(boundary values, periodicity) are imposed in every window as the problem imposes them.

:class:`WindowNets` holds the networks and the window ends (it is what ``model.pt`` of a marching run
saves); :class:`Marched` assembles u from them and the problem, piecewise by window.
"""
from __future__ import annotations

import copy
import importlib
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from kanpde.geometry import TimeDomain
from kanpde.pde.conditions import Initial, InitialRate
from kanpde.pde.constraints import HardConstraint
from kanpde.pde.problem import Problem

log = logging.getLogger("kanpde")


def window_ends(t0: float, t1: float, windows: int, breaks: Sequence[float] = ()) -> list[float]:
    """[t0, ..., t1]: ``windows`` equal windows, or the windows between the interior ``breaks``."""
    if breaks:
        inner = [float(b) for b in breaks]
        if any(not t0 < b < t1 for b in inner) or inner != sorted(set(inner)):
            raise ValueError(f"trainer.marching.breaks must increase strictly inside the time range ({t0}, {t1}) so that the "
                             f"windows tile it; got {list(breaks)}")
        return [float(t0), *inner, float(t1)]
    step = (t1 - t0) / windows
    return [float(t0) + i * step for i in range(windows)] + [float(t1)]


def check_problem(problem: Problem) -> None:
    """Marching needs time, an initial value for every output, and no hard constraints of the problem's own."""
    if not isinstance(problem.domain, TimeDomain):
        raise ValueError(f"trainer.marching cuts the time range into windows, and {problem.name} has no time input "
                         f"(its domain is a {type(problem.domain).__name__}); set trainer.marching.windows=1")
    missing = [o for o in problem.outputs if not any(isinstance(c, Initial) and c.output == o for c in problem.conditions)]
    if missing:
        raise ValueError(f"trainer.marching starts each window from an initial value, and {problem.name} gives none for "
                         f"output(s) {missing}; set trainer.marching.windows=1")
    if problem.hard_terms:
        raise ValueError("trainer.marching imposes each window's initial value exactly itself; set problem.hard_constraints=false "
                         "(boundary values stay loss terms)")


class WindowNets(nn.Module):
    """The windows' networks (one class, one config each) and the window ends ``ends`` = [t0, ..., t1].

    ``model_class`` is the networks' class path, ``configs`` their ``config()``s.  Rebuilt by
    :func:`kanpde.io.load_model`; :class:`Marched` (with the problem) turns it back into u.
    """

    def __init__(self, model_class: str, configs: Sequence[dict[str, Any]], ends: Sequence[float]) -> None:
        super().__init__()
        module_name, _, cls_name = model_class.rpartition(".")
        cls = getattr(importlib.import_module(module_name), cls_name)
        if len(ends) != len(configs) + 1:
            raise ValueError(f"ends: {len(configs)} windows need {len(configs) + 1} ends, got {len(ends)}")
        self.model_class = model_class
        self.ends = [float(e) for e in ends]
        self.nets = nn.ModuleList(cls(**c) for c in configs)

    @classmethod
    def of(cls, nets: Sequence[nn.Module], ends: Sequence[float]) -> WindowNets:
        """A container holding these (trained) networks themselves."""
        first = nets[0]
        holder = cls.__new__(cls)
        nn.Module.__init__(holder)
        holder.model_class = f"{type(first).__module__}.{type(first).__qualname__}"
        holder.ends = [float(e) for e in ends]
        holder.nets = nn.ModuleList(nets)
        return holder

    def config(self) -> dict[str, Any]:
        return {"model_class": self.model_class, "configs": [n.config() for n in self.nets], "ends": list(self.ends)}

    def n_params(self) -> int:
        """Every window's parameters: a marching solution is all of its networks."""
        return sum(p.numel() for p in self.parameters())


class Marched(nn.Module):
    """u assembled from a problem and trained (or partly trained) :class:`WindowNets`: x: (batch, dim) -> (batch, n_out).

    Evaluates only the windows present; a point later than the last one's end gets that window's formula.
    """

    def __init__(self, problem: Problem, windows: WindowNets) -> None:
        super().__init__()
        self.problem = problem
        self.windows = windows

    def n_params(self) -> int:
        return self.windows.n_params()

    def window_model(self, w: int) -> HardConstraint:
        """u on window w as the network inside a hard constraint (what training window w optimises)."""
        a, b = self.windows.ends[w], self.windows.ends[w + 1]
        n_out = len(self.problem.outputs)

        def distance(x: torch.Tensor) -> torch.Tensor:
            return ((x[:, -1:] - a) / (b - a)).expand(-1, n_out)

        earlier = Marched(self.problem, WindowNets.of(list(self.windows.nets[:w]), self.windows.ends[: w + 1])) if w else None

        def lift(x: torch.Tensor) -> torch.Tensor:
            start = TimeDomain.at_time(x, a)
            if earlier is not None:
                return earlier(start)
            return torch.stack([self._initial(o).target(start) for o in self.problem.outputs], dim=1)

        return HardConstraint(self.windows.nets[w], distance, lift)

    def _initial(self, output: str) -> Initial:
        return next(c for c in self.problem.conditions if isinstance(c, Initial) and c.output == output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ends = self.windows.ends
        n = len(self.windows.nets)
        t = x[:, -1]
        index = torch.bucketize(t.detach().contiguous(), torch.tensor(ends[1:n], dtype=t.dtype, device=t.device), right=True)
        out = x.new_zeros(x.shape[0], len(self.problem.outputs))
        for w in range(n):
            rows = (index == w).nonzero().squeeze(1)
            if rows.numel():
                out = out.index_put((rows,), self.window_model(w)(x[rows]))
        return out


def window_problem(problem: Problem, a: float, b: float, earlier: Marched | None) -> Problem:
    """``problem`` on the window [a, b]: its own domain and points, the initial value imposed exactly (no
    loss term), and after the first window an initial rate that continues the earlier windows' u_t."""
    p = copy.copy(problem)
    p.domain = TimeDomain(problem.domain.space, a, b)
    p._plans = {}
    conditions = []
    for c in problem.conditions:
        c = copy.copy(c)
        if isinstance(c, InitialRate) and earlier is not None:
            c.value = _rate(earlier, problem.outputs.index(c.output), a)
        c.bind(p.domain, p.inputs)
        conditions.append(c)
    p.conditions = conditions
    p.hard_terms = tuple(c.name for c in conditions if isinstance(c, Initial))
    return p


def _rate(model: nn.Module, output: int, t: float):
    """x -> du/dt of ``model``'s output at (x's space part, t): (n,), by autograd, without a graph to the weights."""
    def rate(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xs = TimeDomain.at_time(x.detach(), t).requires_grad_(True)
            u = model(xs)[:, output]
            (g,) = torch.autograd.grad(u.sum(), xs)
        return g[:, -1].detach()
    return rate


def march(trainer: Any, problem: Problem, net: nn.Module, ends: Sequence[float], x_eval: torch.Tensor,
          u_ref: torch.Tensor | None, seed: int = 0,
          checkpoints: Callable[[int], tuple[list[Any], Path | None]] | None = None,
          split: Callable[[Any, Problem], tuple[Any, Any]] | None = None) -> tuple[Marched, Any]:
    """Train one window after another with ``trainer`` (``trainer.steps`` steps each) and return the
    assembled u and one :class:`~kanpde.training.state.TrainResult` for the whole run.

    ``net`` is window 0's network; later windows start from a copy of the one before (``transfer``) or
    from a fresh initialisation of the same architecture.  ``u_ref``:
    reference values at ``x_eval`` (None: the problem's exact solution).  The history's ``step``
    runs on across windows and a ``window`` column says which one a row belongs to; each window
    ends a stage.  A window that fails ends the run there, with its message.

    ``checkpoints(w)``: window w's extra callbacks (its checkpointing) and the checkpoint it continues
    from, or None.  A finished window's checkpoint gives back its trained network and history without a
    step, so a resumed run replays the finished windows and continues the interrupted one exactly.

    ``split(points, window_problem)``: this rank's share of a window's points and its
    :class:`~kanpde.training.distributed.Shards` in data-parallel training (every rank marches the same
    windows; the networks stay identical, so each window's initial values are too).
    """
    from kanpde.training.state import TrainResult

    check_problem(problem)
    nets: list[nn.Module] = []
    merged: TrainResult | None = None
    t = x_eval[:, -1]
    for w in range(len(ends) - 1):
        a, b = ends[w], ends[w + 1]
        current = net if w == 0 else copy.deepcopy(nets[-1]) if trainer.config.marching.transfer else _fresh(net, seed + w)
        for p in current.parameters():
            p.requires_grad_(True)
        marched = Marched(problem, WindowNets.of([*nets, current], ends[: w + 2]))
        earlier = Marched(problem, WindowNets.of(nets, ends[: w + 1])) if w else None
        sub = window_problem(problem, a, b, earlier)
        inside = (t >= a) & ((t < b) if w < len(ends) - 2 else (t <= b))
        extra, resume = checkpoints(w) if checkpoints is not None else ([], None)
        points, shards = sub.sample_points(seed + 7919 * w), None
        if split is not None:
            points, shards = split(points, sub)
        result = trainer.fit(sub, marched.window_model(w), points, x_eval[inside], None if u_ref is None else u_ref[inside],
                             seed=seed + w, resume=resume, extra_callbacks=extra, shards=shards)
        for p in current.parameters():
            p.requires_grad_(False)
        nets.append(current)
        last = {k: v[-1] for k, v in result.history.items() if v}
        log.info(f"window {w + 1}/{len(ends) - 1} (t in [{a:g}, {b:g}]): loss {last.get('loss', float('nan')):.3e}, "
                 f"rel_l2 on the window {last.get('rel_l2', float('nan')):.3e}, {result.wall_time_s:.0f} s")
        merged = _merge(merged, result, w, trainer.steps)
        if result.status != "ok":
            merged.message = f"window {w + 1} of {len(ends) - 1} (t in [{a:g}, {b:g}]): {result.message}"
            break
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(True)
    return Marched(problem, WindowNets.of(nets, ends[: len(nets) + 1])), merged


def _fresh(net: nn.Module, seed: int) -> nn.Module:
    """A new network of ``net``'s architecture, initialised under ``seed``, in its dtype and on its device."""
    ref = next(net.parameters())
    torch.manual_seed(seed)
    with torch.device(ref.device):
        return type(net)(**net.config()).to(dtype=ref.dtype)


def _merge(done: Any, result: Any, window: int, steps: int) -> Any:
    """``result`` of window ``window`` appended to the run's result so far (steps and times continued)."""
    history = dict(result.history)
    history["window"] = [float(window)] * len(history.get("step", []))
    if done is None:
        result.history = history
        return result
    offset_step, offset_time = window * steps, done.wall_time_s
    for key, values in history.items():
        shift = offset_step if key == "step" else offset_time if key == "time_s" else 0
        done.history.setdefault(key, []).extend(v + shift for v in values)
    for key, values in result.stages.items():
        shift = offset_step if key == "step" else offset_time if key == "time_s" else 0
        done.stages.setdefault(key, []).extend(v + shift for v in values)
    done.wall_time_s += result.wall_time_s
    done.steps_done += result.steps_done
    done.status, done.message, done.cause = result.status, result.message, result.cause
    return done
