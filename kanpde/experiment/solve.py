"""The Python API: :func:`solve` trains a model on a problem and, given a directory, writes what the CLI writes."""
from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

try:
    import fcntl
except ImportError:  # Windows: no OS file lock; runs into one directory are not guarded there
    fcntl = None

import torch
from omegaconf import OmegaConf
from torch import nn

from kanpde.interpret.auto_symbolic import edge_forms
from kanpde.io.model_file import save_model
from kanpde.io.results import RunAttributes, read_results, write_results
from kanpde.models.kan import KAN
from kanpde.models.protocols import GridModel, n_params
from kanpde.pde import metrics
from kanpde.pde.problem import Points, Problem, points_digest
from kanpde.training import Trainer, TrainResult, distributed, marching
from kanpde.training.callbacks.checkpointing import Checkpointing
from kanpde.training.checkpoint import CheckpointError

log = logging.getLogger("kanpde")


class TrainingFailed(RuntimeError):
    """Training stopped early; the results (``status="failed"``) and the last good model were still written."""


class NonFiniteLoss(TrainingFailed):
    """Training stopped because the loss or the parameters became NaN or infinite."""


class Diverged(TrainingFailed):
    """Training stopped because the loss grew far above its best (``trainer.divergence``)."""


class RunLocked(RuntimeError):
    """Another run holds the lock on this run directory."""


class Interrupted(TrainingFailed):
    """SIGINT or SIGTERM stopped training at a step boundary; ``checkpoint.pt`` continues it."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass
class Run:
    """What :func:`solve` returns: the trained model, the training result, the final errors and the record written."""

    problem: Problem
    model: nn.Module
    result: TrainResult
    errors: dict[str, Any]
    attributes: dict[str, Any]
    out_dir: Path | None = None

    @property
    def history(self) -> dict[str, list[float]]:
        return self.result.history


def _family(net: nn.Module) -> str:
    basis = str(net.basis) if isinstance(net, GridModel) else ""
    return type(net).__name__.lower() + (f"-{basis}" if basis not in ("", "bspline") else "")  # kan, kan-chebyshev, ...


def _interpretation(problem: Problem, net: nn.Module, result: TrainResult, attrs: dict[str, Any], x_eval: torch.Tensor,
                    u_exact: torch.Tensor | None, digits: int) -> dict[str, dict[str, list]]:
    """What pruning and symbolic fitting left, into ``attrs`` (``pruned_width``, ``formula``, ``formula_rel_l2``);
    returns the per-edge ``symbolic`` table for ``results.h5`` (empty without symbolic edges)."""
    if result.pruned_width is not None:
        attrs["pruned_width"] = list(result.pruned_width)
    if not isinstance(net, KAN):
        return {}
    forms = edge_forms(net, result.symbolic)
    if not forms:
        return {}
    table = {key: [getattr(f, key) for f in forms] for key in ("layer", "i", "o", "name", "r2", "a", "b", "c", "d")}
    table["function"] = table.pop("name")
    if not net.is_symbolic():
        numeric = sum(int(layer.mask.count_nonzero()) for layer in net.layers)
        log.info(f"note: {numeric} edge(s) are numeric (none was turned symbolic, or none fitted a library function "
                 f"with R² >= trainer.symbolic.r2_min), so there is no formula; another seed or a stronger trainer.reg may give a sparser network")
    elif problem.hard_terms:
        log.info("note: with hard constraints the network is only part of u; no formula is written")
    else:
        from kanpde.interpret import formula as formulas  # sympy: imported by runs that write a formula only

        exprs = formulas.formula(net, problem.inputs, digits)
        attrs["formula"] = formulas.to_text(exprs, problem.outputs)
        if u_exact is not None:
            ref = u_exact.detach().cpu().to(torch.float64).numpy()
            err = formulas.evaluate(exprs, problem.inputs, x_eval) - ref
            attrs["formula_rel_l2"] = float((err**2).sum() ** 0.5 / (ref**2).sum() ** 0.5)
        log.info(f"formula: {attrs['formula']}" + (f"  (rel L2 {attrs['formula_rel_l2']:.2e})" if "formula_rel_l2" in attrs else ""))
    return {"symbolic": table}


def _config_text(problem: Problem, net: nn.Module, trainer: Trainer, seed: int) -> str:
    """The settings of a run made from Python, as YAML (a CLI run records its composed config instead)."""
    model = {"_target_": f"{type(net).__module__}.{type(net).__qualname__}", **(net.config() if hasattr(net, "config") else {})}
    model.pop("bounds", None)
    plain = {"problem": {"_target_": f"{type(problem).__module__}.{type(problem).__qualname__}"}, "model": model,
             "trainer": trainer.config.as_dict(), "seed": seed}
    return OmegaConf.to_yaml(OmegaConf.create(plain))


def check(problem: Problem, net: nn.Module, trainer: Trainer, activations: bool = False) -> nn.Module:
    """Everything that can fail before training, with messages naming the setting; returns the model to train
    (``net`` inside the problem's hard constraints, if any)."""
    problem.check_periodic_embedding(net)
    try:
        model = problem.constrain(net)  # the network itself unless hard constraints are on
    except ValueError as e:
        raise ValueError(f"problem.{e}") from None
    trainer.check_model(model)
    trainer.check_problem(problem)
    if trainer.config.marches:
        marching.check_problem(problem)
        marching_ends(problem, trainer)  # the breaks must tile the problem's time range
        if activations:
            raise ValueError("interpret.activations=true draws one KAN, and a marching run has one per time window; "
                             "set interpret.activations=false")
    if activations and not isinstance(net, KAN):
        raise ValueError(f"interpret.activations=true draws a KAN's edges, and the model is {type(net).__name__}; set interpret.activations=false")
    if activations and net.embedding.active:
        raise ValueError("interpret.activations=true draws edges over the network's inputs, and this KAN's first layer sees "
                         "embedded features instead; set interpret.activations=false")
    return model


def marching_ends(problem: Problem, trainer: Trainer) -> list[float]:
    """The window ends [t0, ..., t1] of a marching run (checked against the problem's time range)."""
    dom = problem.domain
    m = trainer.config.marching
    return marching.window_ends(dom.t0, dom.t1, m.windows, m.breaks)


def solve(problem: Problem, model: nn.Module, trainer: Trainer | None = None, *, out_dir: str | Path | None = None,
          seed: int = 0, plots: bool = True, activations: bool = False, digits: int = 4, name: str | None = None,
          config: str | None = None) -> Run:
    """Train ``model`` on ``problem`` and evaluate it; with ``out_dir``, write ``results.h5``, ``model.pt`` and plots.

    ``model`` is the network (``problem.constrain`` applies hard constraints around it); ``trainer``
    defaults to ``Trainer()`` (the CLI's trainer defaults).  ``seed`` seeds the model's use of random
    numbers in training and the collocation points; build the model after ``torch.manual_seed(seed)``
    for a run the CLI reproduces.  ``activations`` draws the KAN's edges (``activations.png``),
    ``digits`` rounds a symbolic KAN's formula.  Raises :class:`TrainingFailed` (or
    :class:`NonFiniteLoss`) after writing the files when training stopped early.
    """
    start_time = time.time()
    trainer = trainer if trainer is not None else Trainer()
    net = model
    model = check(problem, net, trainer, activations)
    schedule = trainer.extensions_for(model)
    for note in trainer.schedule_notes(model):
        log.info(f"note: {note}")
    points = problem.sample_points(int(seed))
    x_eval, u_ref = problem.evaluation_set()
    has_exact = problem.exact(x_eval[:1]) is not None
    log.info(f"{problem.name} with {type(net).__name__} {getattr(net, 'width', '')} ({n_params(model)} parameters), "
             f"{trainer.optimizer} for {trainer.steps} steps on {trainer.torch_device} in {trainer.dtype}, "
             f"{trainer.derivative_backend(model)} derivatives{f' ({trainer.kernel_name()})' if trainer.uses_kernel(model) else ''}")
    run_dir = out = Path(out_dir) if out_dir is not None else None
    train_points, shards = points, None
    if distributed.ranks() > 1:  # started by torchrun: train on this rank's share; rank 0 alone writes results
        train_points, shards = distributed.shard(points, distributed.rank(), distributed.ranks(), problem.paired_terms)
        log.info(f"data-parallel on {shards.size} ranks ({', '.join(f'{t}: {n}' for t, n in shards.counts.items())} points in all)")
        out = out if shards.rank == 0 else None
    with run_lock(out):
        ckpt = checkpoint_name(shards)
        resume = resume_from(trainer.config.resume, run_dir, ckpt)
        if resume is not None:
            log.info(f"resuming from {resume}")
        extra = [Checkpointing(run_dir / ckpt, trainer.config.checkpoint.every, trainer.steps)] if run_dir is not None else []
        if trainer.config.marches:
            ends = marching_ends(problem, trainer)
            log.info(f"time-marching over {len(ends) - 1} windows, {trainer.steps} steps each")
            split = None if shards is None else (lambda pts, sub: distributed.shard(pts, shards.rank, shards.size, sub.paired_terms))
            model, result = marching.march(trainer, problem, net, ends, x_eval, None if has_exact else u_ref, seed,
                                           window_checkpoints(trainer, run_dir, shards), split)
            saved, net = model.windows, model.windows.nets[-1]  # model.pt holds every window's network
        else:
            result = trainer.fit(problem, model, train_points, x_eval, None if has_exact else u_ref, seed=seed, resume=resume,
                                 extra_callbacks=extra, shards=shards)

        dev, dt = trainer.torch_device, trainer.torch_dtype
        x_eval = x_eval.to(device=dev, dtype=dt)
        model.eval()
        if has_exact:
            errs = metrics.errors(model, problem.exact, x_eval)
        elif u_ref is not None:
            errs = metrics.errors_against(model, x_eval, u_ref.to(device=dev, dtype=dt))
        else:
            errs = {}
        u_pred = metrics.predict(model, x_eval)
        with torch.no_grad():
            u_exact = problem.exact(x_eval) if has_exact else u_ref
        attrs = _attributes(problem, net, model, trainer, result, errs, schedule, points, seed, start_time, name, config)
        if trainer.config.marches:
            attrs["windows"] = len(saved.nets)
            tables = {}
        else:
            saved, tables = net, _interpretation(problem, net, result, attrs, x_eval, u_exact, digits)
            if isinstance(net, KAN) and net.free_knots:
                tables["knots"] = net.knot_table()
        if out is not None:
            _write(out, problem, saved, result, attrs, tables, x_eval, u_pred, u_exact, points, plots, activations, dev, dt)
    log.info(f"{attrs['problem']} {attrs['model']}: rel_l2={attrs['rel_l2']:.3e} mse={attrs['mse']:.3e} "
             f"n_params={attrs['n_params']} wall_time={attrs['wall_time_s']:.1f}s steps={attrs['steps']}" + (f" -> {out}" if out else ""))
    if result.status != "ok":
        message = result.message + (f" (results and model.pt in {out})" if out is not None else "")
        if result.status == "interrupted":
            raise Interrupted(message, signal.Signals[result.cause].value)
        raise {"non-finite": NonFiniteLoss, "diverged": Diverged}.get(result.cause, TrainingFailed)(message)
    return Run(problem, model, result, errs, attrs, out)


def _attributes(problem: Problem, net: nn.Module, model: nn.Module, trainer: Trainer, result: TrainResult, errs: dict[str, Any],
                schedule: dict[int, int], points: Points, seed: int, start_time: float, name: str | None,
                config: str | None) -> dict[str, Any]:
    """The root attributes of ``results.h5`` (:class:`RunAttributes`, plus per-output errors and learned coefficients)."""
    attrs = RunAttributes(
        problem=name or problem.name, model=f"{type(net).__name__}{list(getattr(net, 'width', []))}", family=_family(net),
        n_params=n_params(model), status=result.status, width=list(getattr(net, "width", [])),
        basis=str(net.basis) if isinstance(net, GridModel) else "", inputs=",".join(problem.inputs), outputs=",".join(problem.outputs),
        hard_constraints=",".join(problem.hard_terms), grid=int(net.grid) if isinstance(net, GridModel) else 0,
        k=int(getattr(net, "k", 0)), rel_l2=errs.get("rel_l2", math.nan), mse=errs.get("mse", math.nan),
        h1_sq=errs.get("h1_sq", math.nan), max_abs_err=errs.get("max_abs_err", math.nan), wall_time_s=result.wall_time_s,
        steps=result.steps_done, seed=int(seed), device=str(trainer.torch_device), dtype=trainer.dtype, optimizer=trainer.optimizer,
        adam_steps=trainer.adam_steps if trainer.optimizer.startswith("adam_") else 0, lr=trainer.lr,
        grid_schedule=" ".join(f"{s}:{g}" for s, g in schedule.items()), n_interior=problem.n_interior,
        n_boundary=problem.n_boundary, points_hash=points_digest(points), threads=torch.get_num_threads(),
        derivatives=trainer.derivative_backend(model), compile=trainer.compile, kernel=trainer.uses_kernel(model),
        message=result.message, created=time.strftime("%Y-%m-%dT%H:%M:%S"), start_time=start_time, end_time=time.time(),
        config=config if config is not None else _config_text(problem, net, trainer, seed),
    ).__dict__
    if len(problem.outputs) > 1:  # per-output errors of a multi-output problem (pooled in rel_l2)
        for out_name, value in zip(problem.outputs, errs.get("rel_l2_outputs", [math.nan] * len(problem.outputs))):
            attrs[f"rel_l2_{out_name}"] = value
    for key, value in problem.unknowns.items():  # learned coefficients: final values (trajectories in history/)
        attrs[f"unknown_{key}"] = float(value.detach())
        if key in problem.true_unknowns:
            truth = float(problem.true_unknowns[key])
            attrs[f"unknown_{key}_rel_err"] = abs(attrs[f"unknown_{key}"] - truth) / abs(truth)
    return attrs


def checkpoint_name(shards: distributed.Shards | None, window: int | None = None) -> str:
    """``checkpoint.pt`` (``checkpoint.window<w>.pt`` for a marching run's window w), with ``.rank<r>-of-<n>``
    in data-parallel training, one file per rank (each holds its rank's points and weights)."""
    stem = "checkpoint" if window is None else f"checkpoint.window{window}"
    return f"{stem}.pt" if shards is None else f"{stem}.rank{shards.rank}-of-{shards.size}.pt"


def window_checkpoints(trainer: Trainer, out: Path | None, shards: distributed.Shards | None = None):
    """A marching run's checkpoints, one per window (and rank: :func:`checkpoint_name`), for :func:`marching.march`:
    window w's checkpointing callback and the checkpoint it continues from (``trainer.resume=auto``)."""
    setting = trainer.config.resume
    if setting not in ("auto", "never"):
        raise CheckpointError(f"trainer.resume={setting}: a time-marching run keeps one checkpoint per window in its run "
                              "directory and continues from them with trainer.resume=auto (or starts afresh with never)")
    if out is None:
        return None

    def window(w: int) -> tuple[list, Path | None]:
        path = out / checkpoint_name(shards, w)
        resume = resume_from(setting, out, path.name)
        if resume is not None:
            log.info(f"window {w + 1}: resuming from {resume}")
        return [Checkpointing(path, trainer.config.checkpoint.every, trainer.steps)], resume

    return window


def resume_from(setting: str, out: Path | None, name: str = "checkpoint.pt") -> Path | None:
    """The checkpoint ``trainer.resume`` asks for: ``auto`` the run directory's (when there is one), ``never``
    none, anything else a path that must exist."""
    if setting == "never":
        return None
    if setting == "auto":
        path = out / name if out is not None else None
        return path if path is not None and path.is_file() else None
    path = Path(setting)
    if not path.is_file():
        raise CheckpointError(f"trainer.resume={setting}: no such checkpoint file")
    return path


@contextmanager
def run_lock(out: Path | None) -> Iterator[None]:
    """Hold an OS lock on ``out`` while a run writes there: a second run into the same directory is refused.
    The lock dies with its process, so a killed run never blocks its own resume."""
    if out is None or fcntl is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".kanpde.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            who = f" (process {holder})" if holder.isdigit() else ""
            raise RunLocked(f"another kanpde run{who} is writing into {out}; give this one its own directory (hydra.run.dir)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # who holds it: for the message above, and for a user who wants to signal the run
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write(out: Path, problem: Problem, net: nn.Module, result: TrainResult, attrs: Mapping[str, Any], tables: dict,
           x_eval: torch.Tensor, u_pred: torch.Tensor, u_exact: torch.Tensor | None, points: Points, plots: bool,
           activations: bool, dev: torch.device, dt: torch.dtype) -> None:
    """``model.pt``, ``results.h5`` and the figures, each written atomically."""
    save_model(out / "model.pt", net)  # the network; with hard constraints, problem.constrain(net) rebuilds u
    results_path = write_results(out / "results.h5", attrs, result.history, {"x": x_eval, "u_pred": u_pred, "u_exact": u_exact},
                                 result.stages, tables)
    if activations:
        from kanpde.interpret.activations import plot_activations  # matplotlib: imported where a run draws

        plot_activations(net, points["pde"]["x"].to(device=dev, dtype=dt), out / "activations.png",
                         problem.inputs, problem.outputs, title=f"{problem.name}: KAN {net.width}")
    if plots:
        from kanpde.analysis import figures

        saved = read_results(results_path)
        figures.plot_solution(saved, out / "solution.png")
        for o, output in enumerate(problem.outputs[1:], start=1):  # multi-output problems: one figure per output
            figures.plot_solution(saved, out / f"solution_{output}.png", output=o)
        figures.plot_history(saved, out / "history.png")
        if "knots" in saved:  # free knots: where the first layer's knots lie in the domain (skipped with an embedding)
            figures.plot_knots(saved, out / "knots.png")
