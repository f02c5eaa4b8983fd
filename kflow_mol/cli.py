"""The command-line edge of the molecular branch: its configs and schemas on :mod:`kflow_edge.cli`.

The scripts call :func:`main` with their config name, schema and run function; a bad
override, an unknown key or a bad value ends the process with one line on stderr and exit
code 2, before any work. ``--help`` prints every key with its default as composed from
``configs/assembly/<name>.yaml``. Hydra is imported lazily (by :mod:`kflow_edge.cli`), so the rest
of ``kflow_mol`` takes plain dataclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kflow.training import ConfigError
from kflow.training.config import RUN_LEVEL_TRAIN_KEYS
from kflow_edge import cli
from kflow_mol.config import SCHEMAS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "assembly"
HIDDEN_KEYS = tuple(f"train.{key}" for key in RUN_LEVEL_TRAIN_KEYS)
"""Keys of the train group that the config refuses (set from the top level): left out of ``--help``."""


def register_configs(store: Any = None) -> None:
    """Register the schemas of :mod:`kflow_mol.config` with Hydra's ConfigStore."""
    if store is None:
        from hydra.core.config_store import ConfigStore

        store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


EDGE = cli.BranchEdge(
    CONFIG_DIR,
    register_configs,
    usage="usage: python scripts/{prog}.py [key=value ...]   (groups: data=..., model=S|M|L)",
    hidden=HIDDEN_KEYS,
)
compose = EDGE.compose
"""``compose(config_name, overrides, schema, config_dir=CONFIG_DIR)``: the composed config as ``schema``."""
main = EDGE.main
"""``main(prog, config_name, schema, run, guard=None, argv=None, edit_overrides=None)``: compose from
``argv`` into ``schema`` and call ``run`` on it; without ``guard``, configuration and file errors
exit 2 with one line (:meth:`kflow_edge.cli.BranchEdge.main`; ``evaluate_overrides`` for
``evaluate_assembly.py``)."""


def evaluate_overrides(overrides: list[str]) -> list[str]:
    """``evaluate_assembly.py``: a ``data=<group>`` on the command line is the data scored.

    ``data=...`` turns ``use_run_data`` off (refused together with ``use_run_data=true``);
    ``data.<key>=...`` alone, with the run's own data scored, would change nothing and is
    refused (unless ``use_run_data=false`` or ``checkpoint=null``, which score ``data``).

    Raises:
        ConfigError: one line naming the contradiction.
    """
    values = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        values.setdefault(key, value.strip().lower())
    run_data = values.get("use_run_data")
    no_model = values.get("checkpoint") in ("null", "none", "~")
    data_keys = sorted(key for key in values if key.startswith("data."))
    if "data" in values:
        if run_data == "true":
            raise ConfigError(
                f"data={values['data']} and use_run_data=true: the run's own data would be scored; drop one"
            )
        if run_data is None:
            return [*overrides, "use_run_data=false"]
    elif data_keys and run_data != "false" and not no_model:
        raise ConfigError(
            f"{data_keys[0]} changes data that is not scored (the run's own data is, use_run_data=true): "
            "name the data with data=<group> (or give use_run_data=false)"
        )
    return overrides
