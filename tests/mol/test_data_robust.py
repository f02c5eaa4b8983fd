"""Broken inputs found in a real corpus: each one is a named rejection and the batch goes on."""

import csv
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.build import NoInputError
from kflow_mol.data.crystals import (
    Crystal,
    CrystalRejected,
    perceive_molecules,
    read_cif,
)
from kflow_mol.data.isolation import run_guarded

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
IBUPROFEN = GOOD / "2300214.cif"  # COD 2300214: type symbols, P2_1/c, Z = 4, 33 atoms per molecule
H_ROW = "H H1a 0.590191 1.047029 1.020408 1\n"


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _rejection(path: Path) -> CrystalRejected:
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(read_cif(path))
    return error.value


def test_unknown_type_symbol_rejects_one_file_and_keeps_the_other(tmp_path):
    source = IBUPROFEN.read_text()
    _write(tmp_path / "in", "good.cif", source)
    _write(tmp_path / "in", "bad.cif", source.replace("C C1a ", "Xx C1a ", 1))
    report = build_assembly_dataset("cif", input=tmp_path / "in", output=tmp_path / "out", progress=False)
    assert report.kept_crystals == 1 and [(r.entry_id, r.reason) for r in report.rejected] == [
        ("bad", "unknown_element")
    ]
    assert "'Xx'" in report.rejected[0].detail
    assert report.accounting() == "1 kept + 1 rejected + 0 skipped = 2 inputs"


def test_placeholder_atomic_numbers_are_unknown_elements_not_index_errors():
    # pymatgen's DummySpecies reports a hash as its Z; such a number must never index a table
    crystal = Crystal("dummy", "test", np.array([6, 1645080809351997781]), np.zeros((2, 3)), np.eye(3) * 10)
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(crystal)
    assert error.value.reason == "unknown_element"


def test_question_mark_type_symbols_are_read_from_the_labels(tmp_path):
    source = IBUPROFEN.read_text()
    unknown = source
    for element in "CHO":
        unknown = unknown.replace(f"\n{element} {element}", f"\n? {element}")
    assert sum(unknown.count(f"\n? {element}") for element in "CHO") == 33
    original, relabelled = read_cif(IBUPROFEN), read_cif(_write(tmp_path, "q.cif", unknown))
    assert relabelled.meta["elements_from_labels"] == 33 and "elements_from_labels" not in original.meta
    assert np.array_equal(original.numbers, relabelled.numbers) and np.array_equal(original.frac, relabelled.frac)
    assert perceive_molecules(relabelled).formula == "C13H18O2"
    nameless = _write(tmp_path, "nameless.cif", source.replace("C C1a ", "? 1a ", 1))
    assert _rejection(nameless).reason == "unknown_element"


def test_cut_inside_the_atom_loop_is_truncated_not_missing_h(tmp_path):
    source = IBUPROFEN.read_text()
    cut = source[: source.index(H_ROW) + len(H_ROW) // 2]  # mid-row, before most H rows
    error = _rejection(_write(tmp_path, "cut.cif", cut))
    assert error.reason == "truncated" and "final newline" in error.detail
    # a cut at a row boundary cannot be seen in the syntax: the detail names the stated formula
    error = _rejection(_write(tmp_path, "rows.cif", source[: source.index(H_ROW)]))
    assert error.reason == "missing_h" and "'C13 H18 O2'" in error.detail


@pytest.mark.parametrize(
    "old, new, reason, words",
    [
        ("C C1a 0.7001985", "C C1a .", "unparsable", "fract_x is '.'"),
        ("C C1a 0.7001985", "C C1a NaN", "unparsable", "fract_x is 'NaN'"),
        ("C C1a 0.7001985", "C C1a -1e300", "unparsable", "fract_x is '-1e300'"),
        ("_cell_length_a                   14.6662(9)", "_cell_length_a 1e400", "bad_cell", "_cell_length_a is 1e400"),
        ("_cell_angle_gamma                90", "_cell_angle_gamma 0", "bad_cell", "_cell_angle_gamma is 0°"),
        ("_cell_angle_beta                 99.432(3)", "_cell_angle_beta 1e6", "bad_cell", "outside (0, 180)"),
        ("_cell_length_c                   10.7275(4)", "_cell_length_c 0", "bad_cell", "_cell_length_c is 0"),
    ],
)
def test_bad_numbers_are_named(tmp_path, old, new, reason, words):
    source = IBUPROFEN.read_text()
    assert old in source
    error = _rejection(_write(tmp_path, "bad.cif", source.replace(old, new, 1)))
    assert error.reason == reason and words in error.detail


def test_parsed_sites_must_match_the_rows_after_symmetry(data_cod_folder, tmp_path):
    # COD 2000334 lists 52 rows in Pbca (8 copies each): 416 sites
    assert len(read_cif(data_cod_folder / "2000334.cif").numbers) == 52 * 8
    # a duplicated row merges into its twin's site
    source = IBUPROFEN.read_text()
    row = "C C1a 0.7001985 0.6300629 1.075148 1\n"
    error = _rejection(_write(tmp_path, "twin.cif", source.replace(row, row + row.replace("C1a", "C1x"))))
    assert error.reason in ("site_count_mismatch", "unparsable")


def test_mmcif_tag_names_are_translated(tmp_path):
    source = IBUPROFEN.read_text()
    dotted = source
    for category in ("_cell_", "_atom_site_", "_space_group_symop_"):
        dotted = dotted.replace(f"\n{category}", f"\n{category[:-1]}.")
    assert "_cell.length_a" in dotted and "_atom_site.fract_x" in dotted
    crystal = read_cif(_write(tmp_path, "ibu.mmCIF", dotted))
    assert np.array_equal(crystal.frac, read_cif(IBUPROFEN).frac) and crystal.crystal_id == "ibu"


def test_non_utf8_text_fields_do_not_matter(tmp_path):
    raw = IBUPROFEN.read_bytes().replace(b"'Stone, Kevin H.'", b"'St\xf6ne, K\xe9vin'")
    crystal = read_cif(_write(tmp_path, "latin1.cif", raw))
    assert np.array_equal(crystal.frac, read_cif(IBUPROFEN).frac)


def _big_cif(rows: int) -> str:
    rng = np.random.default_rng(0)
    lines = [
        "data_big",
        "_cell_length_a 300",
        "_cell_length_b 300",
        "_cell_length_c 300",
        "_cell_angle_alpha 90",
        "_cell_angle_beta 90",
        "_cell_angle_gamma 90",
        "_symmetry_space_group_name_H-M 'P 1'",
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
    ]
    lines += [f"C{k} C {x:.5f} {y:.5f} {z:.5f}" for k, (x, y, z) in enumerate(rng.random((rows, 3)))]
    return "\n".join(lines) + "\n"


def test_size_and_time_limits_reject_a_huge_file_without_stopping_the_batch(tmp_path, data_broken_folder):
    folder = tmp_path / "in"
    _write(folder, "big.cif", _big_cif(100_000))
    _write(folder, "ibuprofen.cif", IBUPROFEN.read_text())
    report = build_assembly_dataset("cif", input=folder, output=tmp_path / "a", progress=False, max_file_mb=1)
    assert {r.entry_id: r.reason for r in report.rejected} == {"big": "too_large"} and report.kept_crystals == 1
    # the 1e5-atom parse is killed at the limit; a quick entry after it is still processed
    (folder / "ibuprofen.cif").unlink()
    _write(folder, "nacl.cif", (data_broken_folder / "nacl.cif").read_text())
    started = time.perf_counter()
    report = build_assembly_dataset(
        "cif", input=folder, output=tmp_path / "b", progress=False, max_file_mb=None, time_limit=3
    )
    assert {r.entry_id: r.reason for r in report.rejected} == {"big": "timeout", "nacl": "not_organic"}
    assert time.perf_counter() - started < 60
    assert "=== big (big.cif): timeout" in (tmp_path / "b" / "errors.log").read_text()
    with open(tmp_path / "b" / "rejections.csv") as handle:
        assert list(csv.reader(handle))[1][:2] == ["big", "timeout"]


def test_ids_that_match_nothing_are_refused(tmp_path):
    _write(tmp_path / "in", "ibuprofen.cif", IBUPROFEN.read_text())
    with pytest.raises(NoInputError, match="none of the 1 requested ids"):
        build_assembly_dataset("cif", input=tmp_path / "in", output=tmp_path / "out", ids=["nope"], progress=False)
    assert not (tmp_path / "out").exists()


def _flaky(index: int) -> int:
    if index == 1:
        raise RuntimeError("boom\nsecond line")
    if index == 2:
        time.sleep(60)
    if index == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    if index == 4:
        raise CrystalRejected("disorder", "made up")
    return index * 10


def test_guarded_runs_turn_errors_hangs_and_crashes_into_outcomes():
    outcomes = sorted(
        run_guarded(_flaky, 6, time_limit=5, workers=2, expected=(CrystalRejected,)), key=lambda o: o.index
    )
    assert [o.value for o in outcomes] == [0, None, None, None, None, 50]
    assert [o.reason for o in outcomes] == [None, "error", "timeout", "error", "disorder", None]
    assert outcomes[1].detail == "RuntimeError: boom" and "Traceback" in outcomes[1].traceback
    assert outcomes[2].seconds < 10 and "WorkerDied" in outcomes[3].detail
    in_process = list(run_guarded(lambda i: _flaky(i) if i < 2 else i, 3, time_limit=None, expected=(CrystalRejected,)))
    assert [o.reason for o in in_process] == [None, "error", None]


def test_non_finite_csv_coordinates_are_a_bad_cluster_file(tmp_path):
    # before the check this reached numpy's eigh and raised LinAlgError
    build_assembly_dataset("cif", input=GOOD, output=tmp_path / "made", write_csv=True, progress=False)
    final = sorted((tmp_path / "made" / "raw" / "FinalPositions").iterdir())[0]
    lines = final.read_text().splitlines()
    fields = lines[1].split(",")
    lines[1] = ",".join(fields[:2] + ["nan"] + fields[3:])
    final.write_text("\n".join(lines) + "\n")
    report = build_assembly_dataset("cod_cluster17", input=tmp_path / "made", output=tmp_path / "out", progress=False)
    assert report.accounting() == "1 kept + 1 rejected + 0 skipped = 2 inputs"
    assert report.rejected[0].reason == "bad_cluster_file" and "non-finite" in report.rejected[0].detail


def test_an_unexpected_exception_is_an_error_row_with_its_traceback_logged(tmp_path):
    from kflow_mol.data.build import _BatchResult, _run
    from kflow_mol.data.sources import SourceEntry, cif_entries
    from kflow_mol.data.start_states import start_scheme

    def fails():
        raise ValueError("no such column\nsecond line")

    entries = [SourceEntry("broken", fails, {"file": "broken.cif"}), *cif_entries(GOOD)]
    settings = {
        "source": "cif",
        "max_atoms": 100,
        "rdkit_check": True,
        "num_mols": 17,
        "criterion": "centroid",
        "min_distance": 1.0,
        "seed": 0,
        "repeats": 1,
        "max_file_mb": None,
    }
    for time_limit in (None, 30):
        result, out = _BatchResult(), tmp_path / str(time_limit)  # a fresh folder: no parts to resume from
        out.mkdir()
        _run(entries, settings, start_scheme("local"), {"time_limit": time_limit, "workers": 1}, out, False, result)
        assert result.complete and sorted(result.clusters) == [1, 2]
        assert (result.rejected[0].reason, result.rejected[0].detail) == ("error", "ValueError: no such column")
        log = (out / "errors.log").read_text()
        assert log.startswith("=== broken (broken.cif): error: ValueError") and "Traceback" in log and "fails" in log
        with open(out / "rejections.csv") as handle:
            assert list(csv.reader(handle)) == [
                ["entry_id", "reason", "detail"],
                ["broken", "error", "ValueError: no such column"],
            ]
