"""How many CPU threads one job may use, so that jobs sharing a machine do not oversubscribe its cores.

A Hydra sweep through ``hydra/launcher=joblib`` runs ``n_jobs`` jobs at once on one machine, and
``hydra/launcher=submitit_local`` starts every job at once; each job's torch would otherwise take
every core, and two jobs on two cores then run slower than one.  On SLURM the allocation says how
many CPUs a task has.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

AUTO = "auto"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _joblib_workers(n_jobs: int, cores: int) -> int:
    """Workers joblib starts for ``n_jobs`` (negative counts back from the core count: -1 means all)."""
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def job_threads(
    requested: int | str | None,
    launcher: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> int | None:
    """Torch threads for one job, or ``None`` to keep torch's default.

    Args:
        requested: the config's ``threads``: a positive int is used as is; ``None`` keeps torch's
            default; ``"auto"`` derives a share from where the job runs (below).
        launcher: the Hydra launcher config of the job (``hydra.launcher``), if any.
        env: environment variables (default ``os.environ``).
        cores: cores available (default: this process's affinity mask).

    ``auto``: inside a SLURM allocation, ``SLURM_CPUS_PER_TASK``; under the joblib launcher, the
    cores divided among its workers; under submitit's local launcher (which starts all jobs at once),
    its ``cpus_per_task`` or 1; otherwise torch's default.
    """
    if requested is None or (isinstance(requested, int) and not isinstance(requested, bool)):
        return requested
    if requested != AUTO:
        raise ValueError(f"threads must be a positive integer, 'auto' or null, got {requested!r}")
    env = os.environ if env is None else env
    cores = available_cores() if cores is None else cores
    if env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(env["SLURM_CPUS_PER_TASK"]))
    target = str((launcher or {}).get("_target_", ""))
    if "joblib" in target.lower():
        n_jobs = (launcher or {}).get("n_jobs", -1)
        return max(1, cores // _joblib_workers(int(n_jobs), cores))
    if target.endswith("LocalLauncher"):  # submitit's local executor
        return max(1, int((launcher or {}).get("cpus_per_task") or 1))
    return None


def job_device(requested: str, launcher: Mapping[str, Any] | None, job_num: int, gpus: int) -> str:
    """The device a sweep job trains on: ``trainer.device`` unless it is ``auto`` and the joblib launcher runs
    several jobs on a machine with several GPUs; then job ``job_num`` takes GPU ``job_num mod gpus``, one
    GPU each.  (SLURM gives each submitit job its own GPUs, which it sees as ``cuda:0``...)"""
    if requested != AUTO or gpus < 2 or "joblib" not in str((launcher or {}).get("_target_", "")).lower():
        return requested
    return f"cuda:{job_num % gpus}"
