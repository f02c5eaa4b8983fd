"""The command-line edge of the image branch: its configs and schemas on :mod:`kflow_edge.cli`.

The scripts call :func:`main` with their config name, schema and run function. A bad override,
key or value, a missing or unusable data folder, codec or Inception file, or an unreadable
checkpoint ends the process with one line ``<prog>: error: ...`` on stderr and exit code 2,
before any output folder is made; nothing is written in the working directory (no Hydra run
folder, no ``.log`` file). ``--help`` prints every key with its default as composed from
``configs/image/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from kflow.training import ConfigError
from kflow.training.config import RUN_LEVEL_TRAIN_KEYS, from_dict
from kflow_edge import cli
from kflow_image.config import register_hydra_schemas

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "image"
HIDDEN_KEYS = tuple(f"train.{key}" for key in RUN_LEVEL_TRAIN_KEYS)
"""Keys of the train group that the config refuses (set from the top level): left out of ``--help``."""
RENAMED_KEYS = {"seed": "train.seed", "train.resume": "resume"}
"""Keys of ``train_image.py`` / ``benchmark_image.py`` before both branches used the same names."""


def compose(config_name: str, overrides: Sequence[str] = (), schema: type | None = None) -> Any:
    """Compose ``configs/image/<config_name>.yaml`` with ``overrides``: a plain dict, or the typed ``schema``.

    Raises:
        ConfigError: one line naming the bad override, key or value.
    """
    values = cli.to_plain(cli.compose(CONFIG_DIR, config_name, overrides, register_hydra_schemas))
    return values if schema is None else from_dict(schema, values)


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


def main(
    prog: str,
    config_name: str,
    schema: type,
    run: Callable[[Any], Any],
    guard: Callable[[str], AbstractContextManager] | None = None,
    argv: Sequence[str] | None = None,
) -> Any:
    """Compose the config from ``argv`` (default ``sys.argv[1:]``) into ``schema`` and call ``run`` on it.

    Args:
        prog: the script name used in error lines.
        config_name: its YAML file under ``configs/image/``.
        schema: its dataclass in :mod:`kflow_image.config` (built by ``kflow.training.config.from_dict``).
        run: the one library call, ``run(config)``.
        guard: a context manager factory around ``run`` (e.g. ``exit_on_training_error``).
    """
    return cli.main(
        prog,
        CONFIG_DIR,
        config_name,
        lambda cfg: from_dict(schema, cli.to_plain(cfg)),
        run,
        register=register_hydra_schemas,
        guard=guard,
        argv=argv,
        usage=f"usage: python scripts/{prog}.py [key=value ...]   (groups: see configs/image/)",
        hidden=HIDDEN_KEYS,
        edit_overrides=renamed_keys if config_name in ("train_image", "benchmark_image") else None,
    )
