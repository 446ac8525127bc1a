"""One experiment from a composed config: build problem, model and trainer, train, evaluate, write results."""
from __future__ import annotations

import hashlib
import importlib
import math
import re
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from kanpde import checks
from kanpde.pde import metrics
from kanpde.analysis import figures as plot
from kanpde.experiment.threads import job_threads
from kanpde.interpret import formula as formulas
from kanpde.interpret.activations import plot_activations
from kanpde.interpret.auto_symbolic import edge_forms
from kanpde.io import read_results, save_model, write_results
from kanpde.models.kan import KAN
from kanpde.pde.problem import Problem


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""


class TrainingFailed(RuntimeError):
    """Training stopped early (e.g. a non-finite loss); results and the last good model were still written."""


def _target(group: str, cfg: Mapping[str, Any]) -> tuple[type, dict[str, Any]]:
    """Resolve ``cfg._target_`` to a class and the remaining keys to plain keyword arguments."""
    kwargs = dict(cfg)
    path = kwargs.pop("_target_", None)
    if not path:
        raise ConfigError(f"{group}._target_ is missing: the config group '{group}' must name the class to build")
    module_name, _, attr = str(path).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr), kwargs
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{group}._target_={path!r} cannot be imported: {e}") from None


def build(group: str, cfg: Mapping[str, Any], **extra: Any) -> Any:
    """Instantiate ``cfg._target_(**cfg, **extra)``; a ValueError/TypeError becomes a ConfigError naming ``group.<field>``."""
    cls, kwargs = _target(group, cfg)
    try:
        return cls(**kwargs, **extra)
    except (ValueError, TypeError) as e:
        msg = str(e)
        field = re.match(r"[A-Za-z_]\w*", msg)
        field = field.group(0) if field else ""
        if not msg.startswith(f"{group}.") and field in kwargs:
            msg = f"{group}.{msg}"
        elif not msg.startswith(f"{group}."):
            msg = f"{group} ({cls.__name__}): {msg}"
        raise ConfigError(msg) from None


def resolve_width(problem: Problem, width: list[Any] | None) -> list[Any] | None:
    """``model.width`` with the placeholders ``in`` (first entry) and ``out`` (last entry) replaced by
    the problem's number of inputs and outputs, so one model config serves every problem."""
    if width is None:
        return None
    width = list(width)
    if width and width[0] == "in":
        width[0] = len(problem.inputs)
    if width and width[-1] == "out":
        width[-1] = len(problem.outputs)
    for i, w in enumerate(width):
        if isinstance(w, str):
            raise ConfigError(f"model.width[{i}]={w!r}: only the first entry may be 'in' and the last 'out'; the others are layer widths")
    return width


def check_model_fits(problem: Problem, width: list[int] | None) -> None:
    """The model's first and last widths must match the problem's inputs and outputs."""
    if width is None:
        return
    n_in, n_out = len(problem.inputs), len(problem.outputs)
    if width[0] != n_in or width[-1] != n_out:
        hint = "[" + ",".join(map(str, [n_in, *width[1:-1], n_out])) + "]"
        raise ConfigError(
            f"model.width={list(width)} does not fit problem '{problem.name}' with {n_in} input(s) {problem.inputs} "
            f"and {n_out} output(s) {problem.outputs}; use e.g. model.width={hint}"
        )


def validate(cfg: DictConfig) -> None:
    """Top-level config values, checked before anything is built."""
    try:
        checks.positive_int("seed", cfg.seed, minimum=0)
        threads = cfg.get("threads")
        if threads is not None and threads != "auto":
            checks.positive_int("threads", threads)
        interpret = cfg.get("interpret") or {}
        unknown = set(interpret) - {"activations", "digits"}
        if unknown:
            raise ValueError(f"interpret takes activations and digits, got unknown key(s) {sorted(unknown)}")
        checks.positive_int("interpret.digits", interpret.get("digits", 4))
        if not isinstance(interpret.get("activations", False), bool):
            raise ValueError(f"interpret.activations must be true or false, got {interpret.get('activations')!r}")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def points_digest(points: Mapping[str, Mapping[str, torch.Tensor]]) -> str:
    """A short hash of the collocation points, so a comparison can check that runs trained on the same points."""
    h = hashlib.sha256()
    for term in sorted(points):
        for key in sorted(points[term]):
            h.update(f"{term}/{key}".encode())
            h.update(points[term][key].detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def interpret_results(cfg: DictConfig, problem: Problem, net: torch.nn.Module, result: Any, attrs: dict[str, Any],
                      x_eval: torch.Tensor, u_exact: torch.Tensor | None) -> dict[str, dict[str, list]]:
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
        print(f"kanpde: note: {numeric} edge(s) are numeric (none was turned symbolic, or none fitted a library function "
              f"with R² >= trainer.symbolic.r2_min), so there is no formula; another seed or a stronger trainer.reg may give a sparser network")
    elif problem.hard_terms:
        print("kanpde: note: with hard constraints the network is only part of u; no formula is written")
    else:
        exprs = formulas.formula(net, problem.inputs, int((cfg.get("interpret") or {}).get("digits", 4)))
        attrs["formula"] = formulas.to_text(exprs, problem.outputs)
        if u_exact is not None:
            ref = u_exact.detach().cpu().to(torch.float64).numpy()
            err = formulas.evaluate(exprs, problem.inputs, x_eval) - ref
            attrs["formula_rel_l2"] = float((err**2).sum() ** 0.5 / (ref**2).sum() ** 0.5)
        print(f"kanpde: formula: {attrs['formula']}" + (f"  (rel L2 {attrs['formula_rel_l2']:.2e})" if "formula_rel_l2" in attrs else ""))
    return {"symbolic": table}


def run(
    cfg: DictConfig,
    output_dir: str | Path,
    problem_name: str | None = None,
    launcher: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the experiment described by ``cfg``, writing ``results.h5``, ``model.pt`` and plots into ``output_dir``.

    ``launcher`` is the Hydra launcher config when the run is one job of a sweep; with ``threads=auto``
    it decides this job's share of the machine's cores (:func:`kanpde.experiment.threads.job_threads`).
    Returns the root attributes written to ``results.h5``.  Raises :class:`ConfigError` before any
    training for a bad config value, and :class:`TrainingFailed` after writing the results when
    training stopped early.
    """
    start_time = time.time()
    validate(cfg)
    output_dir = Path(output_dir)
    threads = job_threads(cfg.get("threads"), launcher)
    if threads is not None:
        torch.set_num_threads(threads)
    plain = OmegaConf.to_container(cfg, resolve=True)
    trainer = build("trainer", plain["trainer"])
    problem = build("problem", plain["problem"])
    if plain["model"].get("width") is not None:
        plain["model"]["width"] = resolve_width(problem, plain["model"]["width"])
    check_model_fits(problem, plain["model"].get("width"))
    torch.manual_seed(int(cfg.seed))
    lower, upper = problem.domain.bounds()
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(trainer.torch_dtype)
    try:
        net = build("model", plain["model"], bounds=(lower.tolist(), upper.tolist()))
    finally:
        torch.set_default_dtype(previous_dtype)
    try:
        model = problem.constrain(net)  # the network itself unless hard constraints are on
    except ValueError as e:
        raise ConfigError(f"problem.{e}") from None
    try:
        trainer.check_model(model)
        trainer.check_problem(problem)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if (cfg.get("interpret") or {}).get("activations", False) and not isinstance(net, KAN):
        raise ConfigError(f"interpret.activations=true draws a KAN's edges, and the model is {type(net).__name__}; set interpret.activations=false")

    schedule = trainer.extensions_for(model)
    for note in trainer.schedule_notes(model):
        print(f"kanpde: note: {note}")
    points = problem.sample_points(int(cfg.seed))
    x_eval, u_ref = problem.evaluation_set()
    has_exact = problem.exact(x_eval[:1]) is not None
    print(f"kanpde: {problem.name} with {type(net).__name__} {getattr(model, 'width', '')} "
          f"({model.n_params()} parameters), {trainer.optimizer} for {trainer.steps} steps on {trainer.torch_device} in {trainer.dtype}, "
          f"{trainer.derivative_backend(model)} derivatives{' (CPU kernel)' if trainer.uses_kernel(model) else ''}")
    result = trainer.fit(problem, model, points, x_eval, None if has_exact else u_ref)

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

    basis = str(getattr(net, "basis", ""))
    family = type(net).__name__.lower() + (f"-{basis}" if basis not in ("", "bspline") else "")  # kan, kan-chebyshev, ...
    attrs = {
        "problem": problem_name or problem.name,
        "model": f"{type(net).__name__}{list(getattr(model, 'width', []))}",
        "family": family,
        "width": list(getattr(model, "width", [])),
        "basis": basis,
        "inputs": ",".join(problem.inputs),
        "outputs": ",".join(problem.outputs),
        "hard_constraints": ",".join(problem.hard_terms),  # condition terms imposed exactly (not in the loss)
        "grid": int(getattr(model, "grid", 0)),
        "k": int(getattr(model, "k", 0)),
        "n_params": int(model.n_params()),
        "rel_l2": errs.get("rel_l2", math.nan),
        "mse": errs.get("mse", math.nan),
        "h1_sq": errs.get("h1_sq", math.nan),
        "max_abs_err": errs.get("max_abs_err", math.nan),
        "wall_time_s": result.wall_time_s,
        "steps": result.steps_done,
        "seed": int(cfg.seed),
        "device": str(dev),
        "dtype": trainer.dtype,
        "optimizer": trainer.optimizer,
        "adam_steps": trainer.adam_steps if trainer.optimizer == "adam_lbfgs" else 0,
        "lr": trainer.lr,
        "grid_schedule": " ".join(f"{s}:{g}" for s, g in schedule.items()),  # step:grid of each extension made
        "n_interior": problem.n_interior,
        "n_boundary": problem.n_boundary,
        "points_hash": points_digest(points),
        "threads": torch.get_num_threads(),
        "derivatives": trainer.derivative_backend(model),  # the back end residual derivatives used
        "compile": trainer.compile,
        "kernel": trainer.uses_kernel(model),  # B-spline layers' derivative pass in the compiled CPU kernel
        "status": result.status,
        "message": result.message,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "start_time": start_time,  # unix seconds: when this job started and finished (sweeps: which jobs overlapped)
        "end_time": time.time(),
        "config": OmegaConf.to_yaml(cfg),
    }
    if len(problem.outputs) > 1:  # per-output errors of a multi-output problem (pooled in rel_l2)
        for name, value in zip(problem.outputs, errs.get("rel_l2_outputs", [math.nan] * len(problem.outputs))):
            attrs[f"rel_l2_{name}"] = value
    for name, value in problem.unknowns.items():  # learned coefficients: final values (trajectories in history/)
        attrs[f"unknown_{name}"] = float(value.detach())
        if name in problem.true_unknowns:
            truth = float(problem.true_unknowns[name])
            attrs[f"unknown_{name}_rel_err"] = abs(attrs[f"unknown_{name}"] - truth) / abs(truth)
    tables = interpret_results(cfg, problem, net, result, attrs, x_eval, u_exact)
    save_model(output_dir / "model.pt", net)  # the network; with hard constraints, problem.constrain(net) rebuilds u
    results_path = write_results(output_dir / "results.h5", attrs, result.history,
                                 {"x": x_eval, "u_pred": u_pred, "u_exact": u_exact}, result.stages, tables)
    if (cfg.get("interpret") or {}).get("activations", False):
        plot_activations(net, points["pde"]["x"].to(device=dev, dtype=dt), output_dir / "activations.png",
                         problem.inputs, problem.outputs, title=f"{problem.name}: KAN {net.width}")
    if cfg.get("plots", True):
        saved = read_results(results_path)
        plot.plot_solution(saved, output_dir / "solution.png")
        for o, name in enumerate(problem.outputs[1:], start=1):  # multi-output problems: one figure per output
            plot.plot_solution(saved, output_dir / f"solution_{name}.png", output=o)
        plot.plot_history(saved, output_dir / "history.png")
    print(f"kanpde: {attrs['problem']} {attrs['model']}: rel_l2={attrs['rel_l2']:.3e} mse={attrs['mse']:.3e} "
          f"n_params={attrs['n_params']} wall_time={attrs['wall_time_s']:.1f}s steps={attrs['steps']} -> {output_dir}")
    if result.status != "ok":
        raise TrainingFailed(f"{result.message} (results and model.pt in {output_dir})")
    return attrs
