"""Synthetic crystals for pre-training: PyXtal random packings of real training molecules.

Every molecule of the parent dataset's *train* split (one conformer: the central molecule
of its first cluster) is packed into ``per_molecule`` random crystals. Space groups are
drawn with roughly the frequencies seen in organic crystals (CSD statistics), one molecule
per asymmetric unit (Z' = 1, general position). The results are labelled
``source="pyxtal_random"``, ``synthetic=True`` and all go to the train split: they never
enter validation or test.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from kflow_mol.data.crystals import Crystal, CrystalRejected, crystal_from_ase
from kflow_mol.data.sources import SourceEntry
from kflow_mol.data.start_states import start_rng

# Approximate share (%) of organic crystal structures per space group (CSD statistics).
SPACE_GROUP_WEIGHTS: dict[int, float] = {
    14: 34.5,  # P2_1/c
    2: 25.0,  # P-1
    15: 8.1,  # C2/c
    19: 7.6,  # P2_12_12_1
    4: 5.4,  # P2_1
    61: 3.4,  # Pbca
    33: 1.6,  # Pna2_1
    1: 0.9,  # P1
    9: 1.0,  # Cc
    29: 0.8,  # Pca2_1
    5: 0.7,  # C2
    18: 0.6,  # P2_12_12
    60: 0.5,  # Pbcn
}


def draw_space_group(rng: np.random.Generator) -> int:
    """A space-group number drawn with :data:`SPACE_GROUP_WEIGHTS`."""
    groups = np.array(sorted(SPACE_GROUP_WEIGHTS))
    weights = np.array([SPACE_GROUP_WEIGHTS[g] for g in groups])
    return int(rng.choice(groups, p=weights / weights.sum()))


def random_molecular_crystal(
    numbers: np.ndarray, positions: np.ndarray, space_group: int, seed: int, crystal_id: str
) -> Crystal:
    """Pack one rigid molecule into a random PyXtal crystal (Z' = 1).

    Args:
        numbers: (n,) atomic numbers.
        positions: (n, 3) one conformer, Å.
        space_group: international number.
        seed: PyXtal seed.
        crystal_id: id of the new crystal.

    Raises:
        CrystalRejected: ``generation_failed``.
    """
    from pymatgen.core import Molecule
    from pyxtal import pyxtal
    from pyxtal.molecule import pyxtal_molecule
    from pyxtal.symmetry import Group

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            molecule = pyxtal_molecule(mol=Molecule([int(z) for z in numbers], positions - positions.mean(0)), fix=True)
            crystal = pyxtal(molecular=True)
            z = Group(space_group)[0].multiplicity
            crystal.from_random(3, space_group, [molecule], [z], seed=seed)
            if not crystal.valid:
                raise RuntimeError("no valid packing found")
            atoms = crystal.to_ase(resort=False)
    except Exception as error:  # noqa: BLE001 - PyXtal raises many kinds
        raise CrystalRejected("generation_failed", f"{crystal_id}: space group {space_group}: {error}") from None
    return crystal_from_ase(atoms, crystal_id, "pyxtal_random", {"space_group": space_group, "synthetic": True})


def synthetic_entries(parent: Path, per_molecule: int, seed: int) -> list[SourceEntry]:
    """Random crystals of the train molecules of a processed dataset.

    Args:
        parent: folder of a processed (real) dataset with ``splits.json``.
        per_molecule: random crystals per training molecule.
        seed: base seed; each crystal's space group and packing derive from it and its id.
    """
    from kflow_mol.data.dataset import load_assembly_dataset

    conformers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cluster in load_assembly_dataset(parent, split="train"):
        if cluster.synthetic or cluster.crystal_id in conformers:
            continue
        first = cluster.mol_index == 0
        conformers[cluster.crystal_id] = (cluster.z[first].numpy(), cluster.pos_target[first].double().numpy())
    entries = []
    for parent_id, (numbers, positions) in sorted(conformers.items()):
        for k in range(per_molecule):
            crystal_id = f"syn_{parent_id}_{k}"
            rng = start_rng(seed, crystal_id, 0, 0)
            space_group = draw_space_group(rng)
            packing_seed = int(rng.integers(2**31))
            entries.append(
                SourceEntry(
                    crystal_id,
                    lambda n=numbers, p=positions, g=space_group, s=packing_seed, c=crystal_id: clash_free_crystal(
                        n, p, g, s, c
                    ),
                    {"parent": parent_id, "space_group": space_group},
                )
            )
    return entries


def clash_free_crystal(
    numbers: np.ndarray, positions: np.ndarray, space_group: int, seed: int, crystal_id: str, attempts: int = 3
) -> Crystal:
    """A random packing whose cell splits back into whole copies of the molecule.

    PyXtal's packings can put atoms of neighbouring molecules within bonding distance; such a
    cell is drawn again (next seed), up to ``attempts`` times.

    Args:
        numbers: (n,) atomic numbers.
        positions: (n, 3) one conformer, Å.
        space_group: international number.
        seed: first PyXtal seed.
        crystal_id: id of the new crystal.

    Raises:
        CrystalRejected: ``generation_failed`` or ``overlap``.
    """
    from kflow_mol.data.crystals import hill_formula, perceive_molecules

    formula, problem = hill_formula(numbers), ""
    for attempt in range(attempts):
        crystal = random_molecular_crystal(numbers, positions, space_group, seed + attempt, crystal_id)
        try:
            molecular = perceive_molecules(crystal, max_atoms_per_molecule=len(numbers), use_rdkit=False)
        except CrystalRejected as error:
            problem = error.detail
            continue
        if molecular.formula == formula:
            return crystal
        problem = f"molecules read back as {molecular.formula}, not {formula}"
    raise CrystalRejected("overlap", f"{crystal_id}: packing clashes in {attempts} draws ({problem})")
