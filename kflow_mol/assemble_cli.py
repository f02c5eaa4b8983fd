"""The command-line edge of :mod:`kflow_mol.assemble` (``scripts/assemble.py``).

Hydra is imported here only, lazily; the composed config becomes an
:class:`~kflow_mol.assemble.AssembleConfig` and one call, :func:`~kflow_mol.assemble.run_assemble`,
does the work. Conventions of the other scripts (:mod:`kflow_mol.cli`): ``--help`` lists every
option; a bad override, unknown key, bad value or bad input ends the process with one line on
stderr and exit code 2.

``input=`` values are quoted for Hydra before parsing, so a SMILES such as
``CC(=O)Oc1ccccc1C(=O)O`` or ``C[C@@H](N)C(=O)O`` needs no shell or Hydra quoting.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from kflow.training import CheckpointError, ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "assemble"
SCHEMA_NAME = "assemble_schema"
QUOTED_KEYS = ("input", "output", "model")


def quote_values(argv: Sequence[str]) -> list[str]:
    """Wrap the value of ``input=`` / ``output=`` / ``model=`` in single quotes for Hydra's grammar
    (parentheses, ``=``, brackets, ``@`` and ``/`` of SMILES and paths), unless already quoted."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in QUOTED_KEYS and value and value[0] not in "'\"" and value != "null":
            escaped = value.replace("\\'", "'").replace("'", "\\'")
            arg = f"{key}='{escaped}'"
        out.append(arg)
    return out


def compose(argv: Sequence[str]):
    """The :class:`~kflow_mol.assemble.AssembleConfig` of ``configs/assemble/assemble.yaml`` and ``argv``.

    Raises:
        ConfigError: one line naming the bad override, key or value.
    """
    from hydra.core.config_store import ConfigStore

    from kflow_mol.assemble import AssembleConfig
    from kflow_mol.cli import compose as compose_assembly

    ConfigStore.instance().store(name=SCHEMA_NAME, node=AssembleConfig)
    return compose_assembly("assemble", quote_values(argv), AssembleConfig, config_dir=CONFIG_DIR)


def help_text() -> str:
    """Usage and every option with its default and meaning (from the AssembleConfig docstring)."""
    from kflow_mol.assemble import AssembleConfig

    described = _attribute_docs(AssembleConfig.__doc__ or "")
    lines = [
        "usage: python scripts/assemble.py input=<SMILES | molecule file | crystal file | folder> [key=value ...]",
        "",
        "Pack copies of a molecule with the shipped K-Flow model (or model=<checkpoint>): writes the predicted",
        "cluster (CIF, XYZ, PDB), the trajectory along k, report.json and a PNG. A crystal file (CIF, periodic",
        "XYZ, POSCAR, .res) is re-packed from a start state and scored against its real cluster (PM-atom /",
        "PM-center); a folder is done file by file (batch mode).",
        "",
        "options:",
    ]
    for field in dataclasses.fields(AssembleConfig):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = "null" if default is None else repr(default)
        lines.append(f"  {field.name}={shown}")
        if field.name in described:
            lines.append(f"      {described[field.name]}")
    lines += ["", "examples:", *_examples()]
    return "\n".join(lines)


def _attribute_docs(doc: str) -> dict[str, str]:
    text = doc.split("Attributes:", 1)[-1]
    found, name = {}, None
    for line in text.splitlines():
        match = re.match(r"\s{8}(\w+): (.*)", line)
        if match:
            name = match.group(1)
            found[name] = match.group(2).strip()
        elif name and line.strip():
            found[name] += " " + line.strip()
    return found


def _examples() -> list[str]:
    return [
        "  python scripts/assemble.py input=CC(=O)Oc1ccccc1C(=O)O              # aspirin: 17 copies packed",
        "  python scripts/assemble.py input=mol.sdf samples=8 output=outputs/mol  # best of 8 draws",
        "  python scripts/assemble.py input=crystal.cif start=local               # PM against the real packing",
        "  python scripts/assemble.py input=my_folder/ output=outputs/batch       # every file of a folder",
    ]


def main(argv: Sequence[str] | None = None, prog: str = "assemble") -> None:
    """Compose, run, and turn every expected failure into one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(help_text())
        return
    try:
        cfg = compose(argv)
        from kflow_mol.assemble import run_assemble

        run_assemble(cfg)
    except (ConfigError, CheckpointError, FileNotFoundError) as error:
        _exit(prog, error, 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - an unexpected failure: one line too, exit 1
        if os.environ.get("KFLOW_DEBUG"):
            raise
        _exit(prog, error, 1, prefix=f"unexpected {type(error).__name__}: ")


def _exit(prog: str, error: BaseException, code: int, prefix: str = "") -> None:
    text = str(error).strip()
    print(f"{prog}: error: {prefix}{text.splitlines()[0] if text else type(error).__name__}", file=sys.stderr)
    sys.exit(code)
