"""Data fixtures for the molecular tests (built once per session, names prefixed ``data_``)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def data_cod_folder() -> Path:
    folder = SHARED / "data" / "cod_organic"
    if not folder.is_dir():
        pytest.skip(f"{folder} not available")
    return folder.resolve()


@pytest.fixture(scope="session")
def data_broken_folder() -> Path:
    return FIXTURES / "broken"


@pytest.fixture(scope="session")
def data_pyxtal_build(tmp_path_factory):
    """pyxtal test.db, local start states, two repeats (the embedded default source)."""
    from kflow_mol.data import build_assembly_dataset

    out = tmp_path_factory.mktemp("pyxtal_local")
    return build_assembly_dataset("pyxtal", output=out, start="local", repeats=2, progress=False)


@pytest.fixture(scope="session")
def data_cod_build(tmp_path_factory, data_cod_folder):
    """All 40 COD CIFs, scrambled start states, with the CSV layout written."""
    from kflow_mol.data import build_assembly_dataset

    out = tmp_path_factory.mktemp("cod_scrambled")
    return build_assembly_dataset(
        "cif", input=data_cod_folder, output=out, start="scrambled", write_csv=True, progress=False
    )
