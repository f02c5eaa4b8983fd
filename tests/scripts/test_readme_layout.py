"""The README layout table names every script and every module of the core and of kflow_mol."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def layout_table() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| where | what |")
    return text[start : text.index("\n\n", start)]


def _names(folder: str) -> list[str]:
    root = ROOT / folder
    files = [p.name for p in root.glob("*.py") if p.name != "__init__.py"]
    packages = [f"{p.name}/" for p in root.iterdir() if (p / "__init__.py").is_file() or p.name == "pretrained"]
    return sorted(files + packages)


@pytest.mark.parametrize("folder", ["kflow", "kflow_mol", "scripts"])
def test_layout_table_names_every_module_and_script(folder):
    table = layout_table()
    missing = [
        name
        for name in _names(folder)
        if f"`{name}`" not in table
        and f"{name}`" not in table
        and f"{name}," not in table
        and not (folder == "scripts" and name.startswith("bench_"))  # listed as bench_*.py
    ]
    assert not missing, f"README layout table misses {folder}/: {missing}"
