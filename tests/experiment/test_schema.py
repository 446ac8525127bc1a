"""One source of defaults: the CLI's composed config and the Python constructors build the same objects."""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from kanpde import KAN, MLP
from kanpde.experiment.configs import config_dir
from kanpde.experiment.run import build, resolve_width
from kanpde.training import Trainer, TrainerConfig


def _plain(cfg, group):
    return OmegaConf.to_container(cfg[group], resolve=True)


def test_default_trainer_is_the_python_default():
    """model=mlp sets no schedule, so the composed trainer is exactly Trainer()."""
    cli = build("trainer", _plain(compose_config("model=mlp"), "trainer"))
    assert cli.config == Trainer().config == TrainerConfig()
    assert cli.config.steps == 2000 and cli.config.optimizer == "ssbroyden"


def test_kan_preset_adds_only_its_grid_schedule():
    cli = build("trainer", _plain(compose_config(), "trainer"))
    assert cli.config == TrainerConfig(grid_extension={"at": [300, 700], "grids": [10, 20]})


@pytest.mark.parametrize("choice, cls, width", [("kan", KAN, [2, 10, 1]), ("mlp", MLP, [2, 20, 20, 20, 1])])
def test_models_have_the_constructor_defaults(choice, cls, width):
    cfg = compose_config(f"model={choice}")
    plain = _plain(cfg, "model")
    problem = build("problem", _plain(cfg, "problem"))
    plain["width"] = resolve_width(problem, plain["width"])
    bounds = [b.tolist() for b in problem.domain.bounds()]
    torch.manual_seed(0)
    cli = build("model", plain, bounds=bounds)
    torch.manual_seed(0)
    python = cls(width, bounds=bounds)
    assert cli.config() == python.config()
    for a, b in zip(cli.state_dict().values(), python.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_chebykan_is_the_kan_with_chebyshev_edges():
    """model=chebykan: KAN(width, basis="chebyshev"), as many parameters as model=kan, and no grid schedule."""
    cfg = compose_config("model=chebykan")
    plain = _plain(cfg, "model")
    problem = build("problem", _plain(cfg, "problem"))
    width = resolve_width(problem, plain["width"])
    bounds = [b.tolist() for b in problem.domain.bounds()]
    model = build("model", {**plain, "width": width}, bounds=bounds)
    assert isinstance(model, KAN) and model.basis == "chebyshev"
    assert model.n_params() == KAN(width, bounds=bounds).n_params()
    assert build("trainer", _plain(cfg, "trainer")).config == TrainerConfig()


def test_kan_g10_is_the_kan_at_grid_10_without_a_schedule():
    cfg = compose_config("model=kan_g10")
    assert _plain(cfg, "model")["grid"] == 10 and _plain(cfg, "model")["basis"] == "bspline"
    assert build("trainer", _plain(cfg, "trainer")).config == TrainerConfig()


PROBLEMS = sorted(p.stem for p in (config_dir() / "problem").glob("*.yaml"))


@pytest.mark.parametrize("name", PROBLEMS)
def test_problem_presets_are_the_constructor_defaults(name):
    """`problem=<name>` and `<Class>()` train on the same points with the same weights and conditions."""
    plain = OmegaConf.to_container(OmegaConf.load(config_dir() / "problem" / f"{name}.yaml"))
    target = plain.pop("_target_")
    module, _, cls_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    varying = {k: v for k, v in plain.items() if k in ("bc",)}  # a preset's choice among one class's variants
    cli, python = build("problem", {"_target_": target, **plain}), cls(**varying)
    for attr in ("n_interior", "n_boundary", "sampler", "weights", "hard_terms", "eval_points_per_dim"):
        assert getattr(cli, attr) == getattr(python, attr), attr
    a, b = cli.sample_points(0), python.sample_points(0)
    assert a.keys() == b.keys()
    for term in a:
        torch.testing.assert_close(a[term]["x"], b[term]["x"], rtol=0, atol=0)


def test_bad_override_fails_at_composition_naming_the_key():
    with pytest.raises(Exception, match="trainer.steps"):
        compose_config("trainer.steps=abc")
    with pytest.raises(Exception, match="trainer.stepz"):
        compose_config("trainer.stepz=3")


def test_schema_covers_every_trainer_setting():
    """The trainer node Hydra composes has exactly TrainerConfig's fields (plus _target_)."""
    node = _plain(compose_config("model=mlp"), "trainer")
    assert set(node) - {"_target_"} == {f.name for f in dataclasses.fields(TrainerConfig)}


def test_yaml_holds_no_trainer_defaults():
    """conf/trainer/default.yaml only extends the schema: no value is written twice."""
    text = (Path(config_dir()) / "trainer" / "default.yaml").read_text()
    assert OmegaConf.create(text).keys() == {"defaults"}
