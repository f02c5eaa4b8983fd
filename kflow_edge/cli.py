"""The command-line edge shared by the scripts of both branches: compose, ``--help``, one error form.

A script hands :func:`main` its config folder and name, how to turn the composed config into
its typed config (``build``) and its one library call (``run``). A bad override, an unknown
key or value, a missing or unreadable input file or checkpoint ends the process with one line
``<prog>: error: <message>`` on stderr and exit code 2; configuration errors are found before
``run`` starts, so before any output folder is made. ``--help`` prints every key with its
default as composed from the YAML files (and any overrides given with it).

Hydra and OmegaConf are imported inside the functions only: importing ``kflow_edge.cli`` loads
neither (the scripts only need them when they compose a config).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kflow.training.config import from_dict
from kflow.training.errors import CheckpointError, ConfigError

EXIT_USAGE = 2
EDGE_ERRORS = (ConfigError, CheckpointError, FileNotFoundError)
"""Errors that are the user's input, not a bug: reported in one line with exit code 2."""
HELP_FLAGS = ("-h", "--help")


def compose(
    config_dir: str | Path,
    config_name: str,
    overrides: Sequence[str] = (),
    register: Callable[[Any], None] | None = None,
) -> Any:
    """Compose ``<config_dir>/<config_name>.yaml`` with command-line ``overrides`` (an OmegaConf config).

    Nothing is written: no run folder, no ``.hydra`` folder, no log file.

    Args:
        register: called with Hydra's ``ConfigStore`` to store the structured schemas first.

    Raises:
        ConfigError: one line naming the bad override, key or value.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    if register is not None:
        register(ConfigStore.instance())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except Exception as error:  # hydra's override, missing-group and schema errors
        cause = f": {first_line(error.__cause__)}" if error.__cause__ is not None else ""
        raise ConfigError(first_line(error).rstrip(".") + cause) from None
    finally:
        GlobalHydra.instance().clear()


def to_plain(cfg: Any, missing_ok: bool = False) -> dict[str, Any]:
    """A composed config as plain nested dicts, interpolations resolved.

    Raises:
        ConfigError: a required key (``???``) left unset (unless ``missing_ok``) or a bad interpolation.
    """
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=not missing_ok)
    except Exception as error:  # omegaconf's MissingMandatoryValue / InterpolationResolutionError
        raise ConfigError(first_line(error)) from None


def help_text(values: dict[str, Any], hidden: Iterable[str] = (), prefix: str = "") -> str:
    """Every key of ``values`` (nested dicts as dotted keys) as ``key=value``, one per line.

    Args:
        hidden: dotted keys left out (keys the config refuses on the command line).
    """
    hidden = set(hidden)
    lines = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if name in hidden:
            continue
        if isinstance(value, dict) and value:
            lines.append(help_text(value, hidden, f"{name}."))
        else:
            lines.append(f"  {name}={_show(value)}")
    return "\n".join(line for line in lines if line)


def _show(value: Any) -> str:
    """A value as it is written in an override (``null``, ``true``, ``[1, 2]``, ``text``)."""
    if isinstance(value, str):
        return value if value else "''"
    return json.dumps(value)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (its type name if it has none)."""
    text = str(error).strip()
    if isinstance(error, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]  # KeyError quotes its message
    return text.splitlines()[0] if text else type(error).__name__


def fail(prog: str, error: BaseException | str, code: int = EXIT_USAGE) -> None:
    """Print ``<prog>: error: <first line>`` on stderr (rank 0 only under torchrun) and exit with ``code``."""
    message = error if isinstance(error, str) else first_line(error)
    if os.environ.get("RANK", "0") == "0":
        print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(
    prog: str,
    config_dir: str | Path,
    config_name: str,
    build: Callable[[Any], Any],
    run: Callable[[Any], Any],
    *,
    register: Callable[[Any], None] | None = None,
    guard: Callable[[str], AbstractContextManager] | None = None,
    argv: Sequence[str] | None = None,
    usage: str = "",
    hidden: Iterable[str] = (),
    edit_overrides: Callable[[list[str]], list[str]] | None = None,
) -> Any:
    """Compose the config from ``argv`` (default ``sys.argv[1:]``), build it and call ``run`` on it.

    Args:
        prog: the script name used in error lines.
        config_dir, config_name: the YAML file composed.
        build: the typed config from the composed OmegaConf config (raises ``ConfigError``).
        run: the one library call, ``run(config)``; its result is returned.
        register: stores the structured schemas in Hydra's ``ConfigStore``.
        guard: a context manager factory around ``run`` (e.g. ``exit_on_training_error``, which
            also maps NaN losses and signals to their exit codes).
        usage: printed above the keys by ``--help``.
        hidden: dotted keys ``--help`` leaves out (keys that the config refuses).
        edit_overrides: checks or completes the override list before composition.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if set(HELP_FLAGS) & set(argv):
        overrides = [arg for arg in argv if arg not in HELP_FLAGS]
        try:
            values = to_plain(compose(config_dir, config_name, overrides, register), missing_ok=True)
        except ConfigError as error:
            fail(prog, error)
        print(usage or f"usage: python scripts/{prog}.py [key=value ...]")
        print("\nkeys and their defaults (??? = required):")
        print(help_text(values, hidden))
        return None
    try:
        if edit_overrides is not None:
            argv = edit_overrides(argv)
        cfg = build(compose(config_dir, config_name, argv, register))
    except ConfigError as error:
        fail(prog, error)
    context = guard(prog) if guard is not None else nullcontext()
    with context:
        try:
            return run(cfg)
        except EDGE_ERRORS as error:
            if guard is not None:  # the guard prints and picks the exit code
                raise ConfigError(first_line(error)) from None
            fail(prog, error)
    return None


@dataclass(frozen=True)
class BranchEdge:
    """The script edge of one branch: its config folder, its schemas and the ``--help`` text.

    Both branches' ``cli`` modules are one of these (``main`` and ``compose`` are its methods);
    the typed config is :func:`kflow.training.config.from_dict` of the composed config.

    Attributes:
        config_dir: the branch's YAML folder (``configs/assembly``, ``configs/image``).
        register: stores the branch's structured schemas in Hydra's ``ConfigStore``.
        usage: the ``--help`` usage line (``{prog}`` is the script name).
        hidden: dotted keys ``--help`` leaves out (keys that the config refuses).
    """

    config_dir: Path
    register: Callable[[Any], None]
    usage: str = "usage: python scripts/{prog}.py [key=value ...]"
    hidden: tuple[str, ...] = ()

    def compose(
        self,
        config_name: str,
        overrides: Sequence[str] = (),
        schema: type | None = None,
        config_dir: Path | None = None,
    ) -> Any:
        """``<config_dir>/<config_name>.yaml`` with ``overrides``: the typed ``schema``, or plain dicts without one.

        Raises:
            ConfigError: one line naming the bad override, key or value.
        """
        values = to_plain(compose(config_dir or self.config_dir, config_name, overrides, self.register))
        return values if schema is None else from_dict(schema, values)

    def main(
        self,
        prog: str,
        config_name: str,
        schema: type,
        run: Callable[[Any], Any],
        guard: Callable[[str], AbstractContextManager] | None = None,
        argv: Sequence[str] | None = None,
        edit_overrides: Callable[[list[str]], list[str]] | None = None,
    ) -> Any:
        """:func:`main` of ``<config_dir>/<config_name>.yaml`` into ``schema``, then ``run(config)``.

        Args:
            prog: the script name used in error lines; ``config_name``: its YAML file.
            schema: its dataclass; ``run``: the one library call.
            guard: a context manager factory around ``run`` (e.g. ``exit_on_training_error``).
            edit_overrides: checks or completes the overrides before composition.
        """
        return main(
            prog,
            self.config_dir,
            config_name,
            lambda cfg: from_dict(schema, to_plain(cfg)),
            run,
            register=self.register,
            guard=guard,
            argv=argv,
            usage=self.usage.format(prog=prog),
            hidden=self.hidden,
            edit_overrides=edit_overrides,
        )
