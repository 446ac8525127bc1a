"""The typed config schema the CLI composes: the one place where defaults live.

Hydra's ConfigStore holds structured configs built from the Python objects themselves: the
trainer's node is :class:`~kanpde.training.config.TrainerConfig` (plus its ``_target_``), and a
model's node is generated from its constructor's signature (:func:`model_node`), so ``KAN()`` in
Python and ``model=kan`` on the command line have the same defaults.  The YAML files under
``conf/`` only choose and set values (presets); a misspelt key or a value of the wrong type fails
when the config is composed, naming the key.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from kanpde.models import KAN, MLP
from kanpde.training.config import TrainerConfig

_SIMPLE = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass
class TrainerNode(TrainerConfig):
    """The trainer as Hydra instantiates it."""
    _target_: str = "kanpde.training.Trainer"


def model_node(cls: type, skip: tuple[str, ...] = ("bounds",)) -> type:
    """A structured config for ``cls``: its ``_target_`` and every constructor argument with its default
    (``width`` is required; ``bounds`` comes from the problem at build time)."""
    fields: list[tuple[str, Any, Any]] = [("_target_", str, field(default=f"{cls.__module__}.{cls.__qualname__}"))]
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = _SIMPLE.get(str(p.annotation), Any)
        if p.default is inspect.Parameter.empty:
            fields.append((name, Any, field(default=None)))
        elif isinstance(p.default, (list, tuple)):
            fields.append((name, Any, field(default_factory=lambda d=p.default: list(d))))
        else:
            fields.append((name, kind if p.default is not None else Optional[kind], field(default=p.default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Node", fields)


@dataclass
class InterpretNode:
    """KAN only: ``activations`` writes activations.png; ``digits`` of a symbolic KAN's formula."""
    activations: bool = False
    digits: int = 4


@dataclass
class RunNode:
    """The top level of ``conf/config.yaml``."""
    problem: Any = None
    model: Any = None
    trainer: Any = None
    seed: int = 0             # model initialisation and collocation points
    threads: Any = "auto"     # torch CPU threads: an integer, null (torch's default) or auto (a sweep job's share)
    plots: bool = True        # write solution.png and history.png
    interpret: InterpretNode = field(default_factory=InterpretNode)


def register() -> None:
    """Put the schema into Hydra's ConfigStore (``conf/config.yaml`` and the model/trainer files extend it)."""
    cs = ConfigStore.instance()
    cs.store(name="kanpde_schema", node=RunNode)
    cs.store(group="trainer", name="schema", node=TrainerNode)
    cs.store(group="model", name="kan_schema", node=model_node(KAN))
    cs.store(group="model", name="mlp_schema", node=model_node(MLP))
