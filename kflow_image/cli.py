"""The command-line edge of the image branch: its configs and schemas on :mod:`kflow_edge.cli`.

The scripts call :func:`main` with their config name, schema and run function. A bad override,
key or value, a missing or unusable data folder, codec or Inception file, or an unreadable
checkpoint ends the process with one line ``<prog>: error: ...`` on stderr and exit code 2,
before any output folder is made; nothing is written in the working directory (no Hydra run
folder, no ``.log`` file). ``--help`` prints every key with its default as composed from
``configs/image/<name>.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from kflow.training import ConfigError
from kflow.training.config import RUN_LEVEL_TRAIN_KEYS
from kflow_edge import cli
from kflow_image.config import register_hydra_schemas

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "image"
HIDDEN_KEYS = tuple(f"train.{key}" for key in RUN_LEVEL_TRAIN_KEYS)
"""Keys of the train group that the config refuses (set from the top level): left out of ``--help``."""
RENAMED_KEYS = {"seed": "train.seed", "train.resume": "resume"}
"""Keys of ``train_image.py`` / ``benchmark_image.py`` before both branches used the same names."""


def renamed_keys(overrides: list[str]) -> list[str]:
    """Refuse a key of :data:`RENAMED_KEYS` in one line naming its new name.

    Raises:
        ConfigError: ``seed is now train.seed (the same key in both branches): train.seed=...``.
    """
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if key in RENAMED_KEYS:
            new = RENAMED_KEYS[key]
            raise ConfigError(f"{key} is now {new} (the same key in both branches): {new}=...")
    return overrides


EDGE = cli.BranchEdge(
    CONFIG_DIR,
    register_hydra_schemas,
    usage="usage: python scripts/{prog}.py [key=value ...]   (groups: see configs/image/)",
    hidden=HIDDEN_KEYS,
)
compose = EDGE.compose
"""``compose(config_name, overrides=(), schema=None)``: the composed config, typed as ``schema`` (plain dicts without)."""
main = EDGE.main
"""``main(prog, config_name, schema, run, guard=None, argv=None, edit_overrides=None)``: compose from
``argv`` into ``schema`` and call ``run`` on it (:meth:`kflow_edge.cli.BranchEdge.main`)."""
