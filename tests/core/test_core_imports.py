"""The core must not depend on a branch or on Hydra (Hydra lives at the edge: ``kflow_edge``,
scripts/, configs/)."""

import ast
import pathlib
import subprocess
import sys

CORE = pathlib.Path(__file__).resolve().parents[2] / "kflow"
FORBIDDEN = ("kflow_mol", "kflow_image", "kflow_edge", "hydra", "omegaconf")


def imported_modules(path: pathlib.Path) -> set[str]:
    """Top-level packages imported anywhere in ``path`` (function bodies included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_source_imports_no_branch_and_no_hydra():
    offenders = {
        str(p.relative_to(CORE.parent)): sorted(imported_modules(p) & set(FORBIDDEN)) for p in CORE.rglob("*.py")
    }
    offenders = {p: names for p, names in offenders.items() if names}
    assert not offenders, f"kflow/ must not import {FORBIDDEN}: {offenders}"


def test_importing_the_core_loads_no_branch_and_no_hydra():
    modules = [f"kflow.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r} + ['kflow.transforms']: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=CORE.parent)
