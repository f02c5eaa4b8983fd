"""Pack a molecule: one molecule (or a crystal) in, a predicted 17-molecule cluster out.

The question a chemist brings: *here is my molecule (or my crystal); how do copies of it
pack?* This package answers it with a trained rigid K-Flow model (the shipped one by
default, :data:`DEFAULT_MODEL`), for Python and for ``scripts/assemble.py`` (the same code)::

    from kflow_mol import assemble

    result = assemble("CC(=O)Oc1ccccc1C(=O)O", num_mols=17, seed=0)  # aspirin, scrambled start
    print(result.report["prediction"]["collision_pct"], result.positions.shape)
    result.write("outputs/aspirin")  # CIF, XYZ, PDB, trajectory, report.json, PNG

Inputs (:func:`read_input`):

- a **crystal** (CIF through the strict pymatgen reader of :mod:`kflow_mol.data.crystals`;
  any periodic format of the ASE reader :mod:`kflow_mol.data.ase_source`: extended XYZ with a
  cell, POSCAR, SHELX ``.res``, ...): its 17-molecule cluster around the first
  symmetry-independent molecule is cut, a start state is drawn (``start="local"`` or
  ``"scrambled"``, the presets of :mod:`kflow_mol.data.start_states`), and the prediction is
  scored against the real packing (PM-atom, PM-center);
- **one molecule**: SDF / MOL (RDKit), PDB / XYZ without a cell (ASE), or a SMILES string
  (RDKit ETKDG conformer, MMFF-optimised): ``num_mols`` rigid copies are given a scrambled
  start (:func:`molecule_start`) and packed. There is no reference, so the report holds only
  the physical checks.

The start box of a lone molecule: the ``scrambled`` preset draws centroids uniformly in a cube
of half-width 1.5 cluster radii (R, the largest centroid distance from the cluster centre).
Without a crystal, R is that of a virtual crystal of typical organic density: the molecule's
van der Waals volume (RDKit grid) divided by the packing coefficient
:data:`PACKING_COEFFICIENT` (0.71, the median over COD organic crystals) gives the volume per
molecule V, and the ``num_mols`` nearest sites of an fcc lattice of that volume give R
(R / V^(1/3) = 1.593 for 17 fcc sites; real 17-molecule clusters: 1.593 ± 0.07 over 25 COD
crystals). So the start is exactly as dense as a scrambled start drawn from a real crystal of
this molecule. ``start="local"`` moves molecules 3 Å (Gaussian) from those fcc sites.

Every draw is scored (:func:`physical_report`): closest intermolecular contact, collision and
separation percentages (:mod:`kflow_mol.metrics.contacts`), and a packing density estimate
(:func:`packing_estimate`). ``samples=N`` draws N start states, predicts each and keeps the
physically best one (:func:`best_draw`: fewest colliding pairs, then contacts nearest the
typical van der Waals contact of real crystals); every draw is in the report.

Bad input raises :class:`AssembleError` (a :class:`~kflow.training.ConfigError`) with one line;
the script turns it into exit code 2.

The package, by job: :mod:`~kflow_mol.assemble.inputs` (reading the input),
:mod:`~kflow_mol.assemble.starts` (start states), :mod:`~kflow_mol.assemble.model` (the shipped
model: load, check, export), :mod:`~kflow_mol.assemble.physics` (physical checks and clash
removal), :mod:`~kflow_mol.assemble.predict` (:func:`assemble`), :mod:`~kflow_mol.assemble.heldout`
(:func:`score_split`), :mod:`~kflow_mol.assemble.outputs` (files and PNG) and
:mod:`~kflow_mol.assemble.job` (``scripts/assemble.py``'s job); every public name is importable
from ``kflow_mol.assemble``.
"""

from __future__ import annotations

import sys
import types

from kflow_mol.assemble.common import (
    AMU_G_CM3,
    FCC_RADIUS_RATIO,
    MAX_ATOMS,
    PACKING_COEFFICIENT,
    RELAX_RATIO,
    STARTS,
    TYPICAL_CONTACT_RATIO,
    AssembleError,
    molecular_mass,
)
from kflow_mol.assemble.heldout import score_split
from kflow_mol.assemble.inputs import (
    CRYSTAL_SUFFIXES,
    MOLECULE_SUFFIXES,
    AssemblyInput,
    check_molecule,
    input_kind,
    molecule_fragments,
    read_input,
)
from kflow_mol.assemble.job import AssembleConfig, batch_files, run_assemble, run_batch, summary_line
from kflow_mol.assemble.model import (
    DEFAULT_MODEL,
    DEFAULT_SCRAMBLED_MODEL,
    EXPECTED_DEFAULT,
    PACKAGE_FORMAT,
    PACKAGE_KEY,
    LoadedModel,
    expected_of,
    export_model,
    load_model,
    package_info,
    resolve_model_path,
)
from kflow_mol.assemble.outputs import check_output_folder, check_writable, plot_result, write_result
from kflow_mol.assemble.physics import (
    best_draw,
    contact_ratios,
    packing_estimate,
    physical_report,
    reference_scores,
    relax_clashes,
)
from kflow_mol.assemble.predict import AssemblyResult, assemble
from kflow_mol.assemble.starts import fcc_sites, molecule_start, van_der_waals_volume

__all__ = [
    "AMU_G_CM3",
    "CRYSTAL_SUFFIXES",
    "DEFAULT_MODEL",
    "DEFAULT_SCRAMBLED_MODEL",
    "EXPECTED_DEFAULT",
    "FCC_RADIUS_RATIO",
    "MAX_ATOMS",
    "MOLECULE_SUFFIXES",
    "PACKAGE_FORMAT",
    "PACKAGE_KEY",
    "PACKING_COEFFICIENT",
    "RELAX_RATIO",
    "STARTS",
    "TYPICAL_CONTACT_RATIO",
    "AssembleConfig",
    "AssembleError",
    "AssemblyInput",
    "AssemblyResult",
    "LoadedModel",
    "assemble",
    "batch_files",
    "best_draw",
    "check_molecule",
    "check_output_folder",
    "check_writable",
    "contact_ratios",
    "expected_of",
    "export_model",
    "fcc_sites",
    "input_kind",
    "load_model",
    "molecular_mass",
    "molecule_fragments",
    "molecule_start",
    "package_info",
    "packing_estimate",
    "physical_report",
    "plot_result",
    "read_input",
    "reference_scores",
    "relax_clashes",
    "resolve_model_path",
    "run_assemble",
    "run_batch",
    "score_split",
    "summary_line",
    "van_der_waals_volume",
    "write_result",
]


class _CallableModule(types.ModuleType):
    """This package, callable: ``kflow_mol.assemble(...)`` and ``from kflow_mol import assemble`` then
    ``assemble(...)`` call :func:`assemble` (the package does not import torch until it is used)."""

    def __call__(self, *args, **kwargs) -> AssemblyResult:
        return assemble(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
