"""Crystal reading and molecule perception on real COD crystals and hand-made bad entries."""

import csv

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.crystals import (
    BOND_TOLERANCE,
    COVALENT_RADII,
    Crystal,
    CrystalRejected,
    hill_formula,
    perceive_molecules,
    read_cif,
)


def _is_whole(numbers, positions):
    """True when the atoms form one covalently bonded group without periodic images."""
    radii = COVALENT_RADII[numbers]
    bonded = cdist(positions, positions) < radii[:, None] + radii[None] + BOND_TOLERANCE
    return connected_components(bonded, directed=False)[0] == 1


def test_cod_crystals_match_their_index(data_cod_folder):
    with open(data_cod_folder / "index.csv") as handle:
        index = {row["cod_id"]: row for row in csv.DictReader(handle)}
    assert len(index) == 40
    for cod_id, row in index.items():
        molecular = perceive_molecules(read_cif(data_cod_folder / f"{cod_id}.cif"), max_atoms_per_molecule=200)
        assert molecular.formula == row["formula"], cod_id
        assert len(molecular.molecules) == int(row["z"]), cod_id
        for molecule in molecular.molecules:
            assert len(molecule.numbers) == int(row["atoms_per_molecule"])
            assert hill_formula(molecule.numbers) == row["formula"]
            assert _is_whole(molecule.numbers, molecule.positions), cod_id
            frac = molecule.centroid @ np.linalg.inv(molecular.crystal.cell)
            assert ((frac >= -1e-9) & (frac < 1 + 1e-9)).all()
        all_atoms = np.concatenate([m.atom_ids for m in molecular.molecules])
        assert np.array_equal(np.sort(all_atoms), np.arange(len(molecular.crystal.numbers)))


def test_symmetry_independent_molecules(data_cod_folder):
    molecular = perceive_molecules(read_cif(data_cod_folder / "2006528.cif"))  # Z = 16, Z' = 2
    assert len(molecular.independent) == 2
    orbits = [m.orbit for m in molecular.molecules]
    assert sorted(np.unique(orbits, return_counts=True)[1].tolist()) == [8, 8]
    assert {orbits[i] for i in molecular.independent} == set(orbits)
    single = perceive_molecules(read_cif(data_cod_folder / "7105573.cif"))  # paracetamol, Z = 4, Z' = 1
    assert single.independent == [0]
    # symmetry copies list their atoms in the same element order
    assert all(np.array_equal(m.numbers, single.molecules[0].numbers) for m in single.molecules)


def test_broken_files_give_reasons_not_exceptions(data_broken_folder, tmp_path):
    report = build_assembly_dataset("cif", input=data_broken_folder, output=tmp_path, progress=False)
    reasons = {r.entry_id: r.reason for r in report.rejected}
    assert reasons == {
        "disordered": "disorder",
        "empty": "unparsable",
        "garbage": "unparsable",
        "nacl": "not_organic",
        "no_hydrogen": "missing_h",
        "truncated": "unparsable",
    }
    assert report.kept_clusters == 0 and report.reason_counts["unparsable"] == 3
    assert "Na" in next(r.detail for r in report.rejected if r.entry_id == "nacl")
    lines = (tmp_path / "rejections.csv").read_text().splitlines()
    assert lines[0] == "entry_id,reason,detail" and len(lines) == 7
    assert "unparsable" in (tmp_path / "rejection_summary.txt").read_text()


def _box_crystal(numbers, cart, length, crystal_id="made"):
    cell = np.diag(length).astype(float)
    return Crystal(crystal_id, "test", np.array(numbers), np.asarray(cart, float) @ np.linalg.inv(cell) % 1.0, cell)


def test_polymer_mixture_and_size_are_rejected():
    # a C-H unit repeated every 1.5 Å along x: each C bonds to its own image
    chain = _box_crystal([6, 1], [[0, 0, 0], [0, 1.09, 0]], [1.5, 8, 8])
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(chain, use_rdkit=False)
    assert error.value.reason == "polymeric"
    methane = [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]
    water = [[5, 5, 5], [5.96, 5, 5], [4.76, 5.93, 5]]
    mixture = _box_crystal([6, 1, 1, 1, 1, 8, 1, 1], methane + water, [10, 10, 10])
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(mixture, use_rdkit=False)
    assert error.value.reason == "multiple_molecules" and "CH4" in error.value.detail
    alone = _box_crystal([6, 1, 1, 1, 1], methane, [10, 10, 10])
    assert perceive_molecules(alone).formula == "CH4"
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(alone, max_atoms_per_molecule=4)
    assert error.value.reason == "too_many_atoms"


def test_rdkit_flags_missing_hydrogens():
    # methane with one H removed: a methyl radical
    methyl = _box_crystal(
        [6, 1, 1, 1], [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63]], [10, 10, 10]
    )
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(methyl)
    assert error.value.reason == "missing_h" and ("radical" in error.value.detail or "RDKit" in error.value.detail)
    assert perceive_molecules(methyl, use_rdkit=False).formula == "CH3"


def test_unknown_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown rejection reason"):
        CrystalRejected("bad_luck")


def test_entry_smiles_must_match_the_perceived_molecule():
    methane = [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]]
    crystal = _box_crystal([6, 1, 1, 1, 1], methane, [10, 10, 10])
    crystal.meta["mol_smi"] = "C"
    assert perceive_molecules(crystal).formula == "CH4"
    crystal.meta["mol_smi"] = "CO"
    with pytest.raises(CrystalRejected) as error:
        perceive_molecules(crystal)
    assert error.value.reason == "formula_mismatch" and "CH4O" in error.value.detail
