"""kanpde.experiment.run in-process, from configs composed like the command line does: reproducibility and the failure path."""
from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from kanpde import MLP
from kanpde.experiment.configs import config_dir
from kanpde.io import load_model, read_results
from kanpde.experiment.run import ConfigError, TrainingFailed, run


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=["problem=poisson1d", "model.width=[1,3,1]", "trainer.progress=false",
                                            "plots=false", *overrides])


class NaNMLP(MLP):
    """An MLP whose output turns NaN after ``n`` forward calls (a stand-in for a diverging run)."""

    def __init__(self, *args, n: int = 20, **kwargs):
        super().__init__(*args, **kwargs)
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        y = super().forward(x)
        return y * math.nan if self.calls > self.n else y

    def config(self):
        return {**super().config(), "n": self.n}


@pytest.mark.slow
def test_same_seed_same_result_different_seed_differs(tmp_path):
    short = ["trainer.steps=12", "trainer.grid_extension.at=[6]", "trainer.grid_extension.grids=[7]"]
    a = run(_cfg(*short), tmp_path / "a")
    b = run(_cfg(*short), tmp_path / "b")
    c = run(_cfg(*short, "seed=1"), tmp_path / "c")
    assert a["rel_l2"] == b["rel_l2"] and a["mse"] == b["mse"]
    assert c["rel_l2"] != a["rel_l2"]
    ha, hb = read_results(tmp_path / "a" / "results.h5")["history"], read_results(tmp_path / "b" / "results.h5")["history"]
    assert (ha["loss"] == hb["loss"]).all()


def test_non_finite_loss_writes_failed_results_and_last_good_model(tmp_path):
    # Step 0 makes 3 forward calls (pde, boundary, logged error); every later Adam step 2.
    # With NaN from call 22 on, step 10 is the first to see it.
    cfg = _cfg("model=mlp", "model.width=[1,8,1]", "trainer.optimizer=adam", "trainer.steps=50", "trainer.log_every=1000",
               "+model.n=21", f"model._target_={__name__}.NaNMLP")
    with pytest.raises(TrainingFailed, match="step 10"):
        run(cfg, tmp_path)
    res = read_results(tmp_path / "results.h5")
    assert res["attrs"]["status"] == "failed" and "step 10" in res["attrs"]["message"]
    assert res["attrs"]["steps"] == 10 and list(res["history"]["step"]) == [0]
    model = load_model(tmp_path / "model.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not list(tmp_path.glob("*.tmp"))


def test_config_errors_raise_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.grid"):
        run(_cfg("model.grid=0"), tmp_path)
    with pytest.raises(ConfigError, match=r"trainer\.grid_extension needs a KAN"):
        run(_cfg("model=mlp", "model.width=[1,4,1]", "trainer.grid_extension.at=[5]", "trainer.grid_extension.grids=[10]"), tmp_path)
    with pytest.raises(ConfigError, match=r"seed"):
        run(_cfg("seed=-1"), tmp_path)
    with pytest.raises(ConfigError, match=r"problem\.weights"):
        run(_cfg("+problem.weights.neumann=1.0"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_results_record_the_cpu_kernel_and_training_matches_without_it(tmp_path):
    """A KAN run on the CPU says it used the compiled kernel; with it switched off the run takes the
    torch operations and trains to the same history (up to rounding); autograd and MLP runs use none."""
    from kanpde.models import native

    short = ["trainer.steps=12", "trainer.grid_extension.at=[6]", "trainer.grid_extension.grids=[10]"]
    built = native.library(torch.float64) is not None
    with_kernel = run(_cfg(*short), tmp_path / "k")
    with native.switched(False):
        without = run(_cfg(*short), tmp_path / "t")
    attrs = [read_results(tmp_path / d / "results.h5")["attrs"] for d in ("k", "t")]
    assert bool(attrs[0]["kernel"]) == built and not attrs[1]["kernel"]
    hk, ht = (read_results(tmp_path / d / "results.h5")["history"] for d in ("k", "t"))
    assert abs(hk["loss"] - ht["loss"]).max() <= 1e-8 * abs(ht["loss"]).max()
    assert with_kernel["rel_l2"] == pytest.approx(without["rel_l2"], rel=1e-6)
    run(_cfg(*short, "trainer.derivatives=autograd"), tmp_path / "a")
    run(_cfg("trainer.steps=3", "model=mlp", "model.width=[1,5,1]"), tmp_path / "m")
    assert not read_results(tmp_path / "a" / "results.h5")["attrs"]["kernel"]
    assert not read_results(tmp_path / "m" / "results.h5")["attrs"]["kernel"]
