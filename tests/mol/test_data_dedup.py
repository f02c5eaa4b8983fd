"""Deduplication across collections: same refcode, or same formula with a matching reduced cell."""

import numpy as np

from kflow_mol.data.dedup import CrystalRecord, cells_match, find_duplicates, reduced_cell, refcode_of

MONOCLINIC = np.array([[14.667, 0.0, 0.0], [0.0, 7.886, 0.0], [-2.237, 0.0, 10.493]])  # ibuprofen-like


def test_reduced_cell_does_not_depend_on_the_choice_of_cell_vectors():
    sheared = np.array([MONOCLINIC[0], MONOCLINIC[1] + MONOCLINIC[0], MONOCLINIC[2] - MONOCLINIC[1]])
    permuted = MONOCLINIC[[1, 2, 0]]
    first = reduced_cell(MONOCLINIC)
    assert cells_match(first, reduced_cell(sheared)) and cells_match(first, reduced_cell(permuted))
    assert reduced_cell(np.zeros((3, 3))) is None


def test_cells_match_within_tolerance_only():
    cell = (5.0, 7.0, 9.0, 90.0, 100.0, 90.0)
    assert cells_match(cell, (5.1, 6.9, 9.2, 90.0, 101.5, 90.0))  # 2 %, 1.5 degrees
    assert not cells_match(cell, (5.4, 7.0, 9.0, 90.0, 100.0, 90.0))  # 8 % longer a
    assert not cells_match(cell, (5.0, 7.0, 9.0, 90.0, 106.0, 90.0))


def test_refcode_of_accepts_csd_refcodes_only():
    assert refcode_of("molcryskit_BRCRIM10") == "BRCRIM10" and refcode_of("PUPBAD01") == "PUPBAD01"
    assert refcode_of("acsala") == "ACSALA"
    assert refcode_of("2300214") is None and refcode_of("k01029") is None and refcode_of(None) is None


def test_duplicates_across_sources_keep_the_first_collection():
    cell = (5.0, 7.0, 9.0, 90.0, 100.0, 90.0)
    close = (5.05, 7.02, 9.1, 90.0, 99.0, 90.0)
    records = [
        CrystalRecord("testdb.A", "pyxtal_testdb", "C6H6", cell, "ABCDEF"),
        CrystalRecord("testdb.A2", "pyxtal_testdb", "C6H6", close, "ABCDEF01"),  # same source: kept
        CrystalRecord("csd500.ABCDEF", "csd500", "C7H8", None, "ABCDEF"),  # same refcode
        CrystalRecord("cod.1", "cod_cif", "C6H6", close, None),  # same formula, matching cell
        CrystalRecord("cod.2", "cod_cif", "C6H6", (6.0, 7.0, 9.0, 90.0, 100.0, 90.0), None),  # a polymorph
        CrystalRecord("small.X", "small", "C8H8", cell, None),  # other formula
    ]
    duplicates = find_duplicates(records)
    assert sorted(duplicates) == ["cod.1", "csd500.ABCDEF"]
    assert "same crystal as testdb.A (refcode ABCDEF)" in duplicates["csd500.ABCDEF"]
    assert "same crystal as testdb.A (formula C6H6 and reduced cell" in duplicates["cod.1"]
