"""Sweeps: thread shares per job, the comparison presets, and real (tiny) multiruns through the basic,
joblib and submitit-local launchers, then kanpde.analysis.compare on what they wrote."""
from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from kanpde.analysis.compare import compare
from kanpde.experiment.configs import config_dir
from kanpde.io import read_results
from kanpde.experiment.threads import available_cores, job_threads
from conftest import load_script

ROOT = Path(__file__).resolve().parents[2]
TINY = ["problem=poisson1d", "trainer.steps=40", "trainer.grid_extension.at=[20]", "trainer.grid_extension.grids=[10]",
        "trainer.progress=false", "plots=false"]
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


def multirun(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kanpde", "-m", *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def results(sweep_dir: Path) -> list[dict]:
    return [read_results(p)["attrs"] for p in sorted(sweep_dir.rglob("results.h5"))]


# --- threads per job ----------------------------------------------------------------------------

def test_explicit_and_default_threads_are_kept():
    assert job_threads(3, {"_target_": JOBLIB, "n_jobs": 2}, env={}, cores=16) == 3
    assert job_threads(None, {"_target_": JOBLIB, "n_jobs": 2}, env={}, cores=16) is None
    assert job_threads("auto", None, env={}, cores=16) is None  # a single run: torch's default


@pytest.mark.parametrize("n_jobs, cores, expected", [(2, 16, 8), (4, 2, 1), (-1, 8, 1), (-2, 8, 1), (3, 8, 2), (1, 8, 8)])
def test_joblib_jobs_share_the_cores(n_jobs, cores, expected):
    assert job_threads("auto", {"_target_": JOBLIB, "n_jobs": n_jobs}, env={}, cores=cores) == expected


def test_submitit_and_slurm_threads():
    assert job_threads("auto", {"_target_": LOCAL, "cpus_per_task": None}, env={}, cores=8) == 1
    assert job_threads("auto", {"_target_": LOCAL, "cpus_per_task": 3}, env={}, cores=8) == 3
    slurm = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 4}
    assert job_threads("auto", slurm, env={"SLURM_CPUS_PER_TASK": "6"}, cores=64) == 6  # the allocation decides
    assert job_threads("auto", slurm, env={}, cores=64) is None


def test_bad_threads_value_is_named():
    with pytest.raises(ValueError, match="threads must be"):
        job_threads("many", None, env={}, cores=2)


# --- the comparison presets ---------------------------------------------------------------------

def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_kan_and_mlp_presets_hold_the_training_settings_equal():
    kan, mlp = _compose("+experiment=poisson_scaling"), _compose("+experiment=poisson_scaling_mlp")
    assert kan.model._target_.endswith("KAN") and mlp.model._target_.endswith("MLP")
    assert kan.problem == mlp.problem and kan.problem._target_.endswith("Poisson2D")
    assert (kan.problem.n_interior, kan.problem.n_boundary, kan.problem.weights.pde) == (10000, 800, 0.01)
    for key in kan.trainer:
        if key not in ("grid_extension", "grid_update"):  # the grid settings: KAN only
            assert kan.trainer[key] == mlp.trainer[key], key
    assert (kan.trainer.grid_extension.method, kan.trainer.grid_update) == ("insert", "follow")  # exact extensions
    assert kan.seed == mlp.seed and kan.hydra.sweeper.params.seed == mlp.hydra.sweeper.params.seed == "0,1,2"
    assert kan.trainer.steps == mlp.trainer.steps
    assert list(mlp.trainer.grid_extension.grids) == [] and list(kan.trainer.grid_extension.grids)[-1] > kan.model.grid
    kan_widths = kan.hydra.sweeper.params["model.width"]
    mlp_widths = mlp.hydra.sweeper.params["model.width"].replace(" ", "")
    assert kan_widths == "[2,5,1],[2,7,1],[2,10,1]"
    assert "[2,100,100,100,1]" in mlp_widths and mlp_widths.count("],[") == 15  # depth 2-5 x width 10-100


def test_quick_mode_changes_both_sides_alike():
    mod = load_script("reproduce_poisson_scaling")
    shared, kan_only, mlp_only = mod.quick_overrides(250, [6, 12, 24])
    assert all(o.startswith("trainer.grid_extension.") for o in kan_only)  # only what MLPs do not have
    assert all(o.startswith("model.width=") for o in mlp_only)
    assert "trainer.steps=1000" in shared and "trainer.grid_extension.at=[250,500,750]" in kan_only


# --- real sweeps --------------------------------------------------------------------------------

@pytest.mark.slow
def test_basic_sweep_then_compare_with_a_failing_job(tmp_path):
    """Two seeds of two widths, one of which does not fit the problem: the sweep goes on past the failing
    jobs, exits non-zero, and the comparison lists every job with its status."""
    proc = multirun(*TINY, "seed=0,1", "model.width=[1,3,1],[2,3,1]", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0
    assert "model.width=[2, 3, 1] does not fit problem 'poisson1d'" in proc.stderr
    attrs = results(tmp_path)
    assert len(attrs) == 2 and {a["seed"] for a in attrs} == {0, 1}  # job 2 (seed 1) ran after job 1 failed
    assert attrs[0]["points_hash"] != attrs[1]["points_hash"]  # the seed draws the points too
    cmp = compare(tmp_path)
    assert cmp.count("ok") == 2
    bad = [r for r in cmp.runs if r.row["status"] != "ok"]
    assert len(bad) == 2 and {r.row["status"] for r in bad} == {"incomplete"} and {r.row["width"] for r in bad} == {"[2,3,1]"}
    with open(tmp_path / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["run_dir"] for r in ok) == ["0", "2"] and all(r["grid"] == "10" for r in ok)
    assert (tmp_path / "scaling.png").is_file() and (tmp_path / "dynamics.png").is_file()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher not installed (pip install -e '.[sweep]')")
def test_joblib_runs_jobs_in_parallel_with_a_share_of_the_cores(tmp_path):
    # model.grid=5,20 with one schedule (extend to 10 at step 20): G=20 is already finer and is kept
    proc = multirun("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "trainer.steps=150", "model.grid=5,20",
                    f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    attrs = results(tmp_path)
    assert len(attrs) == 2 and all(a["status"] == "ok" for a in attrs)
    assert {a["threads"] for a in attrs} == {max(1, available_cores() // 2)}
    assert sorted(a["grid"] for a in attrs) == [10, 20]
    spans = sorted((a["start_time"], a["end_time"]) for a in attrs)
    assert any(s2 < e1 for (_, e1), (s2, _) in zip(spans, spans[1:])), f"no two jobs overlapped: {spans}"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher not installed (pip install -e '.[sweep]')")
def test_submitit_local_sweep_requeues_a_timed_out_job_which_resumes(tmp_path):
    """Two jobs at once through submitit's local executor (one thread each), with a one-minute limit (and the
    executor's three requeues on time-outs). Job 0 gets the scheduler's time-out warning (SIGUSR2) a little after its first checkpoint:
    the test sends it, because the executor's own clock warns no sooner than a minute into a job, and with a
    one-minute limit submitit counts any warning as a time-out. Job 0 writes its checkpoint at the next step
    boundary, submitit requeues it, and its second try resumes and ends with the history of job 1, which
    trains the same way (only its checkpoint interval differs) without interruption."""
    overrides = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=1", *TINY,
                 "trainer.steps=300", "trainer.grid_extension.at=[100]", "trainer.optimizer=adam", "trainer.log_every=10",
                 "trainer.checkpoint.every=5,7", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "-m", "kanpde", "-m", *overrides], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    job = tmp_path / "0"
    deadline = time.time() + 120
    while not (job / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(int((job / ".kanpde.lock").read_text()), signal.SIGUSR2)  # the lock names the process that holds it
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err + out
    attrs = results(tmp_path)
    assert len(attrs) == 2 and all(a["status"] == "ok" and a["steps"] == 300 for a in attrs)
    assert {a["threads"] for a in attrs} == {1}  # the local executor starts every job at once
    logs = "".join(p.read_text() for p in (tmp_path / ".submitit").rglob("*_log.*"))
    assert "this job is timed-out" in logs and "Requeued job" in logs, logs[-3000:]
    resumed = [line for line in (job / "__main__.log").read_text().splitlines() if "resuming from" in line]
    assert len(resumed) == 1, "job 0 ran twice, the second time from its checkpoint"
    first, second = (read_results(tmp_path / d / "results.h5")["history"] for d in ("0", "1"))
    for key in first:
        if key != "time_s":
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert compare(tmp_path).count("ok") == 2


@pytest.mark.slow
def test_reproduction_script_end_to_end(tmp_path):
    """The quick reproduction at a toy size: both sweeps, then the comparison, in one command."""
    # the basic launcher: one process per sweep (the joblib launcher's worker start-ups have their own test)
    proc = subprocess.run([sys.executable, "scripts/reproduce_poisson_scaling.py", "--quick", "--stage-steps", "3", "--launcher", "basic",
                           "--out", str(tmp_path), "--", "problem.n_interior=64", "problem.n_boundary=16"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = OmegaConf.load(next(tmp_path.glob("kan_*/.hydra/config.yaml")))
    assert cfg.trainer.steps == 12 and list(cfg.trainer.grid_extension.grids) == [6, 12, 24] and cfg.model.grid == 3
    with open(tmp_path / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 + 7 and all(r["status"] == "ok" for r in rows)
    assert {r["family"] for r in rows} == {"kan", "mlp"}
    assert "20601" in {r["n_params"] for r in rows}  # the paper's reference MLP
    md = (tmp_path / "comparison.md").read_text()
    assert "optimizer = adam_lbfgs" in md and "steps = 12" in md and "n_interior = 64" in md
    assert "identical for every run of the same seed" in md
    for name in ("scaling.png", "dynamics.png", "summary.h5"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                    reason="hydra-submitit-launcher not installed (pip install -e '.[sweep]')")
def test_the_multi_gpu_slurm_launcher_asks_one_task_per_gpu():
    """hydra/launcher=slurm_ddp: one SLURM job whose tasks are the ranks, one per GPU, requeued on time-outs."""
    from kanpde.experiment.configs import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm_ddp", "hydra.launcher.nodes=2"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes == 2 and launcher.tasks_per_node == launcher.gpus_per_node == 4 and launcher.max_num_timeout >= 1
