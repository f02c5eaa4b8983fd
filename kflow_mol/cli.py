"""The command-line edge of the molecular branch: Hydra composition for the scripts.

Hydra is imported here only, lazily, so the rest of ``kflow_mol`` takes plain dataclasses.
The scripts call :func:`main` with their config name, schema and run function; a bad
override, an unknown key or a bad value ends the process with one line on stderr and exit
code 2, before any work.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from kflow.training import CheckpointError, ConfigError
from kflow_mol.config import SCHEMAS, to_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "assembly"


def register_configs() -> None:
    """Register the schemas of :mod:`kflow_mol.config` with Hydra's ConfigStore."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


def compose(config_name: str, overrides: Sequence[str], schema: type, config_dir: Path = CONFIG_DIR) -> Any:
    """Compose ``configs/assembly/<config_name>.yaml`` with command-line ``overrides`` into ``schema``.

    Raises:
        ConfigError: one line naming the bad override, key or value.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    except Exception as error:  # hydra's override, missing-group and schema errors
        cause = f": {_first_line(error.__cause__)}" if error.__cause__ is not None else ""
        raise ConfigError(_first_line(error).rstrip(".") + cause) from None
    return to_config(cfg, schema)


def main(
    prog: str,
    config_name: str,
    schema: type,
    run: Callable[[Any], Any],
    guard: Callable[[str], AbstractContextManager] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Compose the config from ``argv`` (default ``sys.argv[1:]``) and call ``run`` on it.

    Args:
        prog: the script name used in error lines.
        config_name: its YAML file under ``configs/assembly/``.
        schema: its dataclass in :mod:`kflow_mol.config`.
        run: the one library call, ``run(config)``.
        guard: a context manager factory around ``run`` (e.g. ``exit_on_training_error``);
            without it, configuration and file errors exit 2 with one line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(f"usage: python scripts/{prog}.py [key=value ...]   (groups: data=..., model=S|M|L)\n")
        print(_help(schema))
        return
    try:
        cfg = compose(config_name, argv, schema)
    except ConfigError as error:
        _exit(prog, error)
    context = guard(prog) if guard is not None else nullcontext()
    with context:
        try:
            run(cfg)
        except (ConfigError, CheckpointError, FileNotFoundError) as error:
            if guard is not None:
                raise ConfigError(_first_line(error)) from None
            _exit(prog, error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _exit(prog: str, error: BaseException) -> None:
    print(f"{prog}: error: {_first_line(error)}", file=sys.stderr)
    sys.exit(2)


def _help(schema: type, prefix: str = "") -> str:
    """Every option of ``schema`` with its default, one per line."""
    lines = []
    for field in dataclasses.fields(schema):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        if dataclasses.is_dataclass(default):
            lines.append(_help(type(default), f"{prefix}{field.name}."))
        else:
            lines.append(f"  {prefix}{field.name}={default!r}")
    return "\n".join(lines)
