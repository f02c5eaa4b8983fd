"""source=real: every collection of a data root, deduplicated, one split with per-source tags."""

import json
import shutil
from pathlib import Path

import ase.io
import pytest
from ase import Atoms

from kflow.training import ConfigError
from kflow_mol.config import DataConfig
from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.crystals import read_cif
from kflow_mol.data.dataset import load_assembly_dataset
from kflow_mol.data.real import COLLECTIONS, data_root, evaluation_formulas, pinned_testdb_parts
from kflow_mol.data.splits import read_splits

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
COMMITTED = Path(__file__).resolve().parents[2] / "data" / "splits" / "pyxtal_testdb.json"


def _fake_root(tmp_path: Path) -> Path:
    """A data root in the shared layout: COD ibuprofen, the same crystal as a CSD-500 frame, one OCELOT CIF."""
    root = tmp_path / "data"
    for folder in ("cod_organic", "crystals/csd500", "crystals/ocelot", "crystals/small"):
        (root / folder).mkdir(parents=True)
    shutil.copy(GOOD / "2300214.cif", root / "cod_organic")
    shutil.copy(GOOD / "2000334.cif", root / "crystals" / "ocelot")
    crystal = read_cif(GOOD / "2300214.cif")
    frame = Atoms(numbers=crystal.numbers, scaled_positions=crystal.frac, cell=crystal.cell, pbc=True)
    frame.info["NAME"] = "IBUPRO"
    ase.io.write(root / "crystals" / "csd500" / "CSD-500.xyz", [frame], format="extxyz")
    return root


def test_real_deduplicates_across_sources_tags_clusters_and_keeps_the_committed_testdb_part(tmp_path):
    root = _fake_root(tmp_path)
    ids = ["pyxtal_testdb.ACEMID02", "cod_cif.2300214", "csd500.IBUPRO", "ocelot.2000334"]
    report = build_assembly_dataset("real", input=root, output=tmp_path / "out", ids=ids, progress=False)
    assert report.accounting() == "3 kept + 1 rejected + 0 skipped = 4 inputs"
    (duplicate,) = report.rejected
    assert (duplicate.entry_id, duplicate.reason) == ("csd500.IBUPRO", "duplicate")
    assert "same crystal as cod_cif.2300214 (formula C13H18O2 and reduced cell" in duplicate.detail
    clusters = load_assembly_dataset(report.output)
    assert {(c.crystal_id, c.source) for c in clusters} == {
        ("pyxtal_testdb.ACEMID02", "pyxtal_testdb"),
        ("cod_cif.2300214", "cod_cif"),
        ("ocelot.2000334", "ocelot"),
    }
    splits = read_splits(report.output / "splits.json")
    assert splits["mode"] == "formula" and "pyxtal_testdb.ACEMID02" in splits["test"]  # committed: test
    manifest = json.loads((report.output / "manifest.json").read_text())
    assert manifest["per_source"]["pyxtal_testdb"] == {"test": {"crystals": 1, "clusters": 1}}


def test_a_missing_data_root_or_collection_is_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="data root not found") as error:
        data_root(tmp_path / "nowhere")
    assert "\n" not in str(error.value) and "data.root=" in str(error.value)
    root = _fake_root(tmp_path)
    shutil.rmtree(root / "crystals" / "ocelot")
    with pytest.raises(FileNotFoundError, match="collection ocelot missing"):
        build_assembly_dataset("real", input=root, output=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_pinned_testdb_parts_cover_the_committed_split():
    committed = read_splits(COMMITTED)
    pinned = pinned_testdb_parts(committed)
    assert len(pinned) == 90 and {pinned[f"pyxtal_testdb.{cid}"] for cid in committed["test"]} == {"test"}
    assert [c.tag for c in COLLECTIONS][0] == "pyxtal_testdb"  # test.db wins every duplicate
    assert "C18H14N2O4" in evaluation_formulas()  # mech.db BIYRIM01, also in small/ (pyocse_BIYRIM01)


def test_data_config_root_is_the_input_of_real():
    assert DataConfig(source="real", root="/some/root").input == "/some/root"
    assert DataConfig(source="real").input is None  # the default root
    with pytest.raises(ConfigError, match="set only one"):
        DataConfig(source="real", root="/a", input="/b")
    with pytest.raises(ConfigError, match="source=ase needs"):
        DataConfig(source="ase")


def test_prepare_refuses_a_missing_root_or_ase_input_in_one_line_and_writes_nothing(tmp_path):
    import io

    from omegaconf import OmegaConf

    from kflow_mol.data.prepare import run_prepare

    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / "configs" / "prepare" / "prepare_assembly_data.yaml")
    cfg.pop("hydra")
    cfg.pop("defaults")
    defaults = {**OmegaConf.to_container(cfg), "output": str(tmp_path / "out"), "progress": False}
    cases = {"data root not found": ("real", str(tmp_path / "nowhere")), "source=ase needs input": ("ase", None)}
    for message, (source, input) in cases.items():
        err = io.StringIO()
        assert run_prepare({**defaults, "source": source, "input": input}, err=err) == 2
        assert message in err.getvalue() and err.getvalue().count("\n") == 1
        assert not (tmp_path / "out").exists()
