"""Where the Hydra configs live, for a source checkout, an editable install and a wheel alike."""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent  # the kanpde package directory


def config_dir() -> Path:
    """The directory holding ``config.yaml``.

    A wheel ships the repository's top-level ``conf/`` inside the package as ``kanpde/conf``
    (see ``pyproject.toml``); a source checkout or editable install reads ``conf/`` beside the
    package directly, so edits there take effect without reinstalling.
    """
    for candidate in (_HERE / "conf", _HERE.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"kanpde cannot find its configs: neither {_HERE / 'conf'} nor {_HERE.parent / 'conf'} holds config.yaml")
