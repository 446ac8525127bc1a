"""One experiment from a composed config: build problem, model and trainer from it, then :func:`~kanpde.experiment.solve.solve`."""
from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from kanpde import checks
from kanpde.experiment.solve import TrainingFailed, check, resume_from, solve  # noqa: F401  (TrainingFailed: re-exported for the CLI)
from kanpde.experiment.threads import job_device, job_threads
from kanpde.training import distributed
from kanpde.pde.problem import Problem


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""


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


def resolve_embedding(problem: Problem, spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``model.embedding`` with input names turned into indices, and the periodic axes of a problem with
    ``exact_periodic`` filled in: ``periodic`` may be left out or null (one mode per axis), a number of
    modes for every periodic axis, or ``{input name: modes}``."""
    spec = dict(spec or {})
    axes = problem.periodic_axes()
    index = {name: i for i, name in enumerate(problem.inputs)}

    def axis(key: str, name: Any) -> int:
        if isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(problem.inputs):
            return name
        if name not in index:
            raise ConfigError(f"model.embedding.{key}: {name!r} is not an input of {problem.name}; its inputs are {problem.inputs}")
        return index[name]

    periodic = spec.get("periodic")
    if periodic is None or (isinstance(periodic, int) and not isinstance(periodic, bool)):
        if periodic is not None and not axes:
            raise ConfigError(f"model.embedding.periodic={periodic}: problem {problem.name} has no periodic axis imposed exactly; "
                              f"set problem.exact_periodic=true (with a Periodic condition) or drop model.embedding.periodic")
        periodic = {i: periodic or 1 for i in axes}
    elif isinstance(periodic, Mapping):
        periodic = {axis("periodic", name): modes for name, modes in periodic.items()}
    else:
        raise ConfigError(f"model.embedding.periodic must be a number of modes or {{input: modes}}, got {periodic!r}")
    spec["periodic"] = periodic
    fourier = spec.get("fourier")
    if fourier:
        fourier = dict(fourier)
        inputs = fourier.get("inputs")
        if isinstance(inputs, (list, tuple)):
            fourier["inputs"] = [axis("fourier.inputs", name) for name in inputs]
        spec["fourier"] = fourier
    return spec if spec.get("periodic") or spec.get("fourier") or set(spec) - {"periodic", "fourier"} else None


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


def build_parts(plain: dict[str, Any], seed: int) -> tuple[Any, Problem, Any]:
    """Trainer, problem and network from a resolved config (a plain dict; its model section is completed in
    place), the network built after ``torch.manual_seed(seed)`` in the trainer's dtype, as every run builds them."""
    trainer = build("trainer", plain["trainer"])
    problem = build("problem", plain["problem"])
    if plain["model"].get("width") is not None:
        plain["model"]["width"] = resolve_width(problem, plain["model"]["width"])
    check_model_fits(problem, plain["model"].get("width"))
    if "embedding" in plain["model"]:
        plain["model"]["embedding"] = resolve_embedding(problem, plain["model"]["embedding"])
    torch.manual_seed(seed)
    lower, upper = problem.domain.bounds()
    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(trainer.torch_dtype)
    try:
        net = build("model", plain["model"], bounds=(lower.tolist(), upper.tolist()))
    finally:
        torch.set_default_dtype(previous_dtype)
    return trainer, problem, net


def run(
    cfg: DictConfig,
    output_dir: str | Path,
    problem_name: str | None = None,
    launcher: Mapping[str, Any] | None = None,
    job_num: int = 0,
) -> dict[str, Any]:
    """Run the experiment described by ``cfg``, writing ``results.h5``, ``model.pt`` and plots into ``output_dir``.

    ``launcher`` is the Hydra launcher config when the run is one job of a sweep; with ``threads=auto``
    it decides this job's share of the machine's cores (:func:`kanpde.experiment.threads.job_threads`), and
    with ``trainer.device=auto`` under the joblib launcher its GPU (job ``job_num`` of the sweep).
    Returns the root attributes written to ``results.h5``.  Raises :class:`ConfigError` before any
    training for a bad config value, and :class:`TrainingFailed` after writing the results when
    training stopped early.
    """
    validate(cfg)
    threads = job_threads(cfg.get("threads"), launcher)
    if threads is not None:
        torch.set_num_threads(threads)
    plain = OmegaConf.to_container(cfg, resolve=True)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    plain["trainer"]["device"] = job_device(plain["trainer"].get("device", "auto"), launcher, job_num, gpus)
    if distributed.launched():  # torchrun: join the ranks; each takes its own GPU, or the CPU
        plain["trainer"]["device"] = distributed.init(plain["trainer"]["device"])
        if distributed.rank() > 0:
            logging.getLogger("kanpde").setLevel(logging.WARNING)  # rank 0 speaks for the run
    trainer, problem, net = build_parts(plain, int(cfg.seed))
    interpret = plain.get("interpret") or {}
    try:
        check(problem, net, trainer, bool(interpret.get("activations", False)))
        resume_from(trainer.config.resume, Path(output_dir))
        if distributed.ranks() > 1:
            distributed.shard(problem.sample_points(int(cfg.seed)), distributed.rank(), distributed.ranks(), problem.paired_terms)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return solve(problem, net, trainer, out_dir=Path(output_dir), seed=int(cfg.seed), plots=bool(cfg.get("plots", True)),
                 activations=bool(interpret.get("activations", False)), digits=int(interpret.get("digits", 4)),
                 name=problem_name, config=OmegaConf.to_yaml(cfg)).attributes
