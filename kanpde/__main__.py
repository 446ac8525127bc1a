"""``python -m kanpde [overrides]``: one experiment (or a sweep with ``-m``) from the Hydra configs in ``conf/``."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .configs import config_dir
from .run import ConfigError, TrainingFailed, run


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    try:
        attrs = run(cfg, Path(hc.runtime.output_dir), problem_name=hc.runtime.choices.get("problem"),
                    launcher=OmegaConf.to_container(hc.launcher, resolve=False) if hc.mode == RunMode.MULTIRUN else None)
    except ConfigError as e:
        print(f"kanpde: invalid config: {e}", file=sys.stderr)
        sys.exit(2)
    except TrainingFailed as e:
        print(f"kanpde: training failed: {e}", file=sys.stderr)
        sys.exit(1)
    return attrs["rel_l2"]


def main() -> None:
    """Console entry point (``kanpde ...`` behaves like ``python -m kanpde ...``)."""
    _main()


if __name__ == "__main__":
    main()
