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

from kflow_edge import cli
from kflow_image.config import register_hydra_schemas

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "image"


def compose(config_name: str, overrides: Sequence[str] = (), schema: type | None = None) -> Any:
    """Compose ``configs/image/<config_name>.yaml`` with ``overrides``: a plain dict, or ``schema.from_dict`` of it.

    Raises:
        ConfigError: one line naming the bad override, key or value.
    """
    values = cli.to_plain(cli.compose(CONFIG_DIR, config_name, overrides, register_hydra_schemas))
    return values if schema is None else schema.from_dict(values)


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
        schema: its dataclass in :mod:`kflow_image.config` (with ``from_dict``, which validates).
        run: the one library call, ``run(config)``.
        guard: a context manager factory around ``run`` (e.g. ``exit_on_training_error``).
    """
    return cli.main(
        prog,
        CONFIG_DIR,
        config_name,
        lambda cfg: schema.from_dict(cli.to_plain(cfg)),
        run,
        register=register_hydra_schemas,
        guard=guard,
        argv=argv,
        usage=f"usage: python scripts/{prog}.py [key=value ...]   (groups: see configs/image/)",
    )
