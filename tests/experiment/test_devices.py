"""Devices: cuda:N is checked against the GPUs torch sees, and a joblib sweep spreads its jobs one GPU each."""
from __future__ import annotations

import pytest
import torch

from kanpde.experiment.threads import job_device
from kanpde.training.config import TrainerConfig, check_device

JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 4}
SLURM = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"}


@pytest.mark.parametrize("launcher, gpus, expected", [
    (JOBLIB, 4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0"]),
    (JOBLIB, 2, ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]),
    (JOBLIB, 1, ["auto"] * 5),   # one GPU: every job keeps auto (that GPU)
    (JOBLIB, 0, ["auto"] * 5),
    (SLURM, 4, ["auto"] * 5),    # SLURM hands each job its own GPUs
    (None, 4, ["auto"] * 5),     # a single run
])
def test_joblib_sweeps_take_one_gpu_per_job(launcher, gpus, expected):
    assert [job_device("auto", launcher, n, gpus) for n in range(5)] == expected


def test_an_explicit_device_is_kept():
    assert job_device("cpu", JOBLIB, 3, 4) == "cpu" and job_device("cuda:1", JOBLIB, 0, 4) == "cuda:1"


def test_cuda_n_is_checked_against_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == "cuda:0" and check_device("cuda") == "cuda"
    with pytest.raises(ValueError, match=r"trainer.device=cuda:7 but torch sees 1 CUDA device\(s\), cuda:0 to cuda:0"):
        TrainerConfig(device="cuda:7")


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:0", "cuda:-1"])
def test_bad_device_strings_name_the_setting(bad):
    with pytest.raises(ValueError, match="trainer.device must be auto, cpu, cuda or cuda:N"):
        TrainerConfig(device=bad)
