"""The one run-folder format of both branches: ``config.yaml`` and ``checkpoints/{last,best}.pt``.

A run folder written by ``scripts/train_assembly.py`` or ``scripts/train_image.py`` holds the
run's full typed config as ``config.yaml`` (plain YAML, the keys of the branch's run config),
the Trainer's ``checkpoints/last.pt`` (and ``best.pt`` when it validated), its logs and
metrics. :func:`read_config` also reads the ``run_config.json`` of image runs written before
the two branches shared this format. Both branches' ``load_run(run_dir)`` start here.

PyYAML (a Hydra dependency) is imported inside the functions only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kflow.training.errors import ConfigError

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINTS = ("last", "best")
LEGACY_CONFIG_FILES = ("run_config.json",)
"""Config files of older run folders (JSON), read when ``config.yaml`` is absent."""


def write_config(run_dir: str | Path, values: dict[str, Any]) -> Path:
    """Write ``values`` (plain nested dicts, lists, scalars) as ``<run_dir>/config.yaml``; returns its path."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    path.write_text(yaml.safe_dump(values, sort_keys=False, default_flow_style=False))
    return path


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The config saved in a run folder (``config.yaml``, else an older ``run_config.json``).

    Raises:
        FileNotFoundError: one line when ``run_dir`` holds neither (not a run folder).
        ConfigError: one line when the file cannot be parsed.
    """
    import yaml

    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    for candidate in (path, *(run_dir / name for name in LEGACY_CONFIG_FILES)):
        if candidate.is_file():
            try:
                text = candidate.read_text()
                values = json.loads(text) if candidate.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as error:
                raise ConfigError(f"{candidate}: unreadable run config ({type(error).__name__})") from None
            if not isinstance(values, dict):
                raise ConfigError(f"{candidate}: a run config must be a mapping of keys")
            return values
    raise FileNotFoundError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path:
    """``<run_dir>/checkpoints/<which>.pt`` (``which``: ``last`` or ``best``), which must exist.

    Raises:
        ConfigError: an unknown ``which``, or the file is missing (one line naming it).
    """
    if which not in CHECKPOINTS:
        raise ConfigError(f"checkpoint {which!r}: choose one of {list(CHECKPOINTS)}")
    path = Path(run_dir) / CHECKPOINT_DIR / f"{which}.pt"
    if not path.is_file():
        hint = " (best.pt exists only when the run validated)" if which == "best" else ""
        raise ConfigError(f"{path}: no such checkpoint{hint}")
    return path
