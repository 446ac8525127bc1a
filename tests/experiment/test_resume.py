"""Long runs through the command line: SIGTERM and SIGKILL mid-run, then resume to the uninterrupted history."""
from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import kanpde
from kanpde.experiment.configs import config_dir
from kanpde.experiment.run import run
from kanpde.experiment.solve import RunLocked
from kanpde.io import read_results
from kanpde.problems.poisson import Poisson1D

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["problem=poisson1d", "problem.n_interior=600", "model.width=[1,5,1]", "trainer.steps=100", "trainer.checkpoint.every=1",
        "trainer.grid_extension.at=[30]", "trainer.grid_extension.grids=[10]", "trainer.log_every=5", "trainer.progress=false",
        "plots=false"]


def start(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kanpde", *ARGS, *extra, f"hydra.run.dir={out}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def checkpoint_step(out: Path) -> int:
    """The step of the run's last checkpoint, -1 before the first (checkpoints are replaced atomically)."""
    path = out / "checkpoint.pt"
    return torch.load(path, weights_only=False)["step"] if path.exists() else -1


def interrupt(out: Path, sig: int, at_step: int) -> subprocess.Popen:
    """Start a run and send ``sig`` a random fraction of a second after its checkpoint reaches ``at_step``
    (a step count rather than a time, so a fast machine cannot finish the run first); returns the finished
    process, its output unread."""
    proc = start(out)
    deadline = time.time() + 120
    while checkpoint_step(out) < at_step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(sig).uniform(0.0, 0.2))
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


def same_history(a: Path, b: Path) -> None:
    ha, hb = read_results(a / "results.h5")["history"], read_results(b / "results.h5")["history"]
    assert ha.keys() == hb.keys()
    for key in ha:
        if key != "time_s":
            np.testing.assert_array_equal(ha[key], hb[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in this process on one thread like the runs it is compared with."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            run(compose("config", overrides=ARGS), out)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.slow
def test_sigkill_then_sigterm_and_the_run_resumes_each_time_to_the_same_history(reference, tmp_path):
    """SIGKILL a little after step 10: no results file, and the next run resumes. SIGTERM that run a little
    after step 40 (or its first new checkpoint): it stops cleanly at a step boundary with status
    ``interrupted`` and exit code 143. The third run resumes again and ends with the uninterrupted history."""
    proc = interrupt(tmp_path, signal.SIGKILL, at_step=10)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "results.h5").exists()
    killed_at = checkpoint_step(tmp_path)
    assert 10 <= killed_at < 100
    proc = interrupt(tmp_path, signal.SIGTERM, at_step=max(killed_at + 1, 40))
    out, _ = proc.communicate()
    assert proc.returncode == 143 and "resuming from" in out
    attrs = read_results(tmp_path / "results.h5")["attrs"]
    assert attrs["status"] == "interrupted" and "SIGTERM" in attrs["message"] and 0 < attrs["steps"] < 100
    resumed = start(tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming from" in out
    assert read_results(tmp_path / "results.h5")["attrs"]["steps"] == 100
    same_history(reference, tmp_path)


@pytest.mark.slow
def test_resume_errors_are_one_line(tmp_path):
    proc = start(tmp_path, "trainer.resume=/no/such/checkpoint.pt")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().splitlines() == [err.strip()] and "/no/such/checkpoint.pt" in err


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".kanpde.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress, which wrote its process id
        handle.write("4242\n")
        handle.flush()
        problem = Poisson1D(n_interior=16, n_boundary=2)
        with pytest.raises(RunLocked, match="another kanpde run \\(process 4242\\) is writing into"):
            kanpde.solve(problem, kanpde.KAN([1, 2, 1]), kanpde.Trainer(steps=2, progress=False), out_dir=tmp_path)
    assert not (tmp_path / "results.h5").exists()
