"""``python -m kanpde [overrides]``: one experiment (or a sweep with ``-m``) from the Hydra configs in ``conf/``."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kanpde.experiment.configs import config_dir
from kanpde.experiment.run import ConfigError, run
from kanpde.experiment.solve import Interrupted, RunLocked, TrainingFailed
from kanpde.training.checkpoint import CheckpointError


class JobFailed(RuntimeError):
    """One job of a sweep failed; raised so that Hydra goes on with the other jobs."""


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    sweep = hc.mode == RunMode.MULTIRUN
    try:
        attrs = run(cfg, Path(hc.runtime.output_dir), problem_name=hc.runtime.choices.get("problem"),
                    launcher=OmegaConf.to_container(hc.launcher, resolve=False) if sweep else None, job_num=int(hc.job.num or 0) if sweep else 0)
    except (ConfigError, CheckpointError, RunLocked, TrainingFailed) as e:
        what = ("interrupted" if isinstance(e, Interrupted) else "training failed" if isinstance(e, TrainingFailed)
                else "cannot start" if isinstance(e, RunLocked) else "invalid config")
        print(f"kanpde: {what}: {e}", file=sys.stderr)
        if sweep and not isinstance(e, Interrupted):
            # an exception (not an exit) lets Hydra run the sweep's other jobs; it reports this one at the end
            raise JobFailed(f"job {hc.job.num} ({hc.runtime.output_dir}): {what}: {e}") from None
        # 128 + the signal for an interrupt (130: SIGINT, 143: SIGTERM), as a shell reports it
        sys.exit(128 + e.signum if isinstance(e, Interrupted) else 1 if isinstance(e, TrainingFailed) else 2)
    return attrs["rel_l2"]


def main() -> None:
    """Console entry point (``kanpde ...`` behaves like ``python -m kanpde ...``)."""
    _main()


if __name__ == "__main__":
    main()
