"""The ASE reader (source=ase): extended XYZ and ASE databases, one crystal per frame or row.

Every bad frame, row or file is one counted rejection: no cell, no pbc, a missing or repeated
name, a corrupt database.
"""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.db import connect

from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.ase_source import ase_entries, read_frames
from kflow_mol.data.crystals import CrystalRejected, read_cif
from kflow_mol.data.dataset import load_assembly_dataset

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"


def _ibuprofen(name: str | None = None) -> Atoms:
    """COD 2300214 (ibuprofen, P2_1/c, Z = 4) as a P1 ASE cell, optionally named."""
    crystal = read_cif(GOOD / "2300214.cif")
    atoms = Atoms(numbers=crystal.numbers, scaled_positions=crystal.frac, cell=crystal.cell, pbc=True)
    if name is not None:
        atoms.info["NAME"] = name
    return atoms


def _no_cell(name: str) -> Atoms:
    atoms = Atoms(numbers=[6, 1, 1, 1, 1], positions=np.eye(5, 3), info={"NAME": name})
    return atoms


def _no_pbc(name: str) -> Atoms:
    atoms = _ibuprofen(name)
    atoms.pbc = [True, True, False]
    return atoms


def _reasons(report) -> dict[str, str]:
    return {r.entry_id: r.reason for r in report.rejected}


def test_multi_frame_extxyz_keeps_named_periodic_frames_and_counts_each_bad_one(tmp_path):
    path = tmp_path / "set.xyz"
    frames = [_ibuprofen("IBUPRO"), _ibuprofen(), _ibuprofen("IBUPRO"), _no_cell("FLAT"), _no_pbc("SLAB")]
    ase.io.write(path, frames, format="extxyz")
    report = build_assembly_dataset("ase", input=path, output=tmp_path / "out", progress=False, time_limit=30)
    assert report.accounting() == "1 kept + 4 rejected + 0 skipped = 5 inputs"
    assert _reasons(report) == {
        "set.xyz#1": "bad_name",
        "IBUPRO#set.xyz#2": "bad_name",
        "FLAT": "not_periodic",
        "SLAB": "not_periodic",
    }
    details = {r.entry_id: r.detail for r in report.rejected}
    assert "no name" in details["set.xyz#1"] and "already used by set.xyz frame 0" in details["IBUPRO#set.xyz#2"]
    assert "no unit cell" in details["FLAT"] and "pbc TTF" in details["SLAB"]
    clusters = load_assembly_dataset(report.output)
    assert {c.crystal_id for c in clusters} == {"IBUPRO"} and {c.source for c in clusters} == {"ase"}
    assert {c.formula for c in clusters} == {"C13H18O2"}


def test_ase_database_rows_are_named_by_their_keys_or_row_id_and_bad_rows_are_counted(tmp_path):
    path = tmp_path / "crystals.db"
    with connect(str(path)) as db:
        db.write(_ibuprofen(), name="IBU_A")  # row 1
        db.write(_ibuprofen(), refcode="IBU_A")  # row 2: the same name again
        db.write(_ibuprofen())  # row 3: no name key -> row3
        db.write(_no_pbc(None), csd_code="SLAB")  # row 4
        db.write(_no_cell("x"), name="FLAT")  # row 5
    entries, skipped = ase_entries(path, "ase")
    assert [e.entry_id for e in entries] == ["IBU_A", "IBU_A#crystals.db#1", "row3", "SLAB", "FLAT"]
    assert skipped == []
    report = build_assembly_dataset("ase", input=path, output=tmp_path / "out", progress=False, time_limit=0)
    assert report.accounting() == "2 kept + 3 rejected + 0 skipped = 5 inputs"
    assert _reasons(report) == {"IBU_A#crystals.db#1": "bad_name", "SLAB": "not_periodic", "FLAT": "not_periodic"}
    assert report.kept_clusters == 2  # Z' = 1: one cluster per crystal


def test_a_corrupt_database_is_one_rejection_and_other_files_are_skipped_or_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.db").write_bytes(b"this is not an SQLite file\x00" * 40)
    (folder / "notes.txt").write_text("hello\n")
    (folder / "sub").mkdir()
    ase.io.write(folder / "one.xyz", [_no_cell("FLAT")], format="extxyz")
    report = build_assembly_dataset("ase", input=folder, output=tmp_path / "out", progress=False, time_limit=30)
    assert report.accounting() == "0 kept + 2 rejected + 2 skipped = 4 inputs"
    assert _reasons(report) == {"broken.db": "unparsable", "FLAT": "not_periodic"}
    assert "not a readable ASE database" in report.rejected[0].detail
    assert sorted((s.name, s.reason) for s in report.skipped) == [
        ("notes.txt", "not an ASE structure file"),
        ("sub", "not a file"),
    ]


def test_unreadable_and_empty_structure_files_are_unparsable(tmp_path):
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text('3\nLattice="1 0 0\nnot a frame at all\n')
    with pytest.raises(CrystalRejected) as error:
        read_frames(garbage)
    assert error.value.reason == "unparsable"
    empty = tmp_path / "empty.db"
    connect(str(empty)).count()  # an empty (valid) database
    with pytest.raises(CrystalRejected, match="no structure"):
        read_frames(empty)


def test_a_single_structure_file_without_a_name_is_named_by_its_file(tmp_path):
    ase.io.write(tmp_path / "POSCAR_ibu", _ibuprofen(), format="vasp")
    ase.io.write(tmp_path / "ibu.cif", _ibuprofen(), format="cif")
    ase.io.write(tmp_path / "shelx.res", _ibuprofen(), format="res")
    entries, skipped = ase_entries(tmp_path, "ase")
    assert [e.entry_id for e in entries] == ["POSCAR_ibu", "ibu", "shelx"] and skipped == []
    assert [e.load().numbers.shape for e in entries[1:]] == [(132,), (132,)]
    crystal = entries[0].load()
    assert crystal.numbers.shape == (132,) and crystal.source == "ase"
    assert np.allclose(crystal.cell, _ibuprofen().cell[:], atol=1e-5)


def test_a_file_whose_reading_hangs_is_one_timeout_and_the_other_files_are_read(tmp_path, monkeypatch):
    import time

    import kflow_mol.data.ase_source as ase_source

    original = ase_source.read_frames

    def slow_for_one(path):
        if Path(path).name == "slow.xyz":
            time.sleep(60)
        return original(path)

    monkeypatch.setattr(ase_source, "read_frames", slow_for_one)  # forked workers inherit it
    folder = tmp_path / "in"
    folder.mkdir()
    ase.io.write(folder / "slow.xyz", [_no_cell("A")], format="extxyz")
    ase.io.write(folder / "fast.xyz", [_no_cell("B")], format="extxyz")
    started = time.perf_counter()
    report = build_assembly_dataset("ase", input=folder, output=tmp_path / "out", progress=False, time_limit=2)
    assert time.perf_counter() - started < 30
    assert report.accounting() == "0 kept + 2 rejected + 0 skipped = 2 inputs"
    assert _reasons(report) == {"B": "not_periodic", "slow.xyz": "timeout"}
