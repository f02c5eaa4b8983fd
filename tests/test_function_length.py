"""No function of the library is longer than 60 lines, its docstring included (the developers' guide).

Counted as ruff does not: from the ``def`` line to the function's last line (decorators aside),
for every function and method, nested ones too, of ``kflow/``, ``kflow_mol/``, ``kflow_image/``
and ``kflow_edge/``. Scripts and tests are not library code. ruff's ``C901`` (complexity) and
``PLR0915`` (statements) in ``pyproject.toml`` bound the other two measures of a long function.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("kflow", "kflow_mol", "kflow_image", "kflow_edge")
MAX_LINES = 60


def long_functions(root: Path = ROOT, packages=LIBRARY, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` of every function of ``packages`` over ``limit`` lines, longest first."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        found.append((lines, f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)"))
    return [text for _, text in sorted(found, reverse=True)]


def test_the_counter_counts_docstrings_and_nested_functions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(57))
    nested = "\n".join(f"            x{i} = {i}" for i in range(60))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        f'def short():\n    """Doc."""\n{body}\n\n\ndef long():\n    """Doc.\n\n    More.\n    """\n{body}\n'
        f"\n\nclass A:\n    def method(self):\n        def inner():\n{nested}\n"
    )
    found = long_functions(tmp_path, ("pkg",))
    assert found == [
        "pkg/mod.py:62 long (62 lines)",
        "pkg/mod.py:127 method (62 lines)",
        "pkg/mod.py:128 inner (61 lines)",
    ]


def test_no_library_function_is_over_60_lines():
    found = long_functions()
    assert not found, f"{len(found)} library function(s) over {MAX_LINES} lines:\n" + "\n".join(found)
