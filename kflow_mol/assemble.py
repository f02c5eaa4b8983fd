"""Pack a molecule: one molecule (or a crystal) in, a predicted 17-molecule cluster out.

The question a chemist brings: *here is my molecule (or my crystal); how do copies of it
pack?* This module answers it with a trained rigid K-Flow model (the shipped one by
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
"""

from __future__ import annotations

import json
import math
import sys
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kflow.training import CheckpointError, ConfigError, load_checkpoint
from kflow.training.config import check_choice, check_range

DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "assembly_default.pt"
"""The shipped model, trained on local starts (``scripts/export_default_model.py`` writes it)."""

DEFAULT_SCRAMBLED_MODEL = DEFAULT_MODEL.with_name("assembly_default_scrambled.pt")
"""The shipped model for scrambled starts, when there is one: ``model="default"`` uses it for
``start="scrambled"`` (else :data:`DEFAULT_MODEL`)."""

PACKAGE_KEY = "kflow_mol_assemble"
"""The entry of a shipped model file that describes it (:func:`package_info`)."""

PACKAGE_FORMAT = 1
"""Layout version of :data:`PACKAGE_KEY`; a file of another version is refused."""

EXPECTED_DEFAULT = {"system": "kflow", "mode": "rigid", "head": "rigid", "K": 2, "preset": "S", "start": "local"}
"""What this code expects of the shipped model; :func:`load_model` checks the file against it.
A better network with other settings changes this line and re-exports (MODEL_CARD.md)."""

MAX_ATOMS = 100
"""Atoms per molecule (H included) of the training data (``max_atoms`` of the data build)."""

PACKING_COEFFICIENT = 0.71
"""Van der Waals volume / volume per molecule of a typical organic crystal (RDKit grid volume;
median over 25 COD organic crystals, 0.715 ± 0.047)."""

FCC_RADIUS_RATIO = 1.5929
"""Largest centroid distance from the centre of the 17 nearest fcc sites, over V^(1/3)."""

TYPICAL_CONTACT_RATIO = 0.87
"""Median over real crystal molecules of (closest contact to another molecule) / (Bondi vdW sum
of that atom pair), measured on the real test clusters (see :func:`contact_ratios`)."""

RELAX_RATIO = 0.7
"""Clash removal (:func:`relax_clashes`): intermolecular contacts below this fraction of the Bondi
van der Waals sum are pushed apart (real crystals: per-cluster closest contact median 0.87,
below 0.7 only for some strong hydrogen bonds)."""

MOLECULE_SUFFIXES = {".sdf": "sdf", ".mol": "mol", ".pdb": "pdb", ".xyz": "xyz", ".extxyz": "xyz", ".smi": "smi"}
CRYSTAL_SUFFIXES = {".cif": "cif", ".mmcif": "cif", ".res": "ase", ".vasp": "ase", ".poscar": "ase", ".db": "ase"}
STARTS = ("local", "scrambled")
AMU_G_CM3 = 1.66053906660  # amu / Å^3 -> g / cm^3


class AssembleError(ConfigError):
    """Bad input for :func:`assemble`: one line saying what and why."""


# ----- inputs -----------------------------------------------------------------------------------
@dataclass
class AssemblyInput:
    """What :func:`assemble` packs.

    Attributes:
        name: file stem, or ``"smiles"``.
        kind: ``"smiles"``, ``"molecule"`` or ``"crystal"``.
        source: the input as given (path or SMILES).
        numbers: (n,) atomic numbers of one molecule.
        positions: (n, 3) its coordinates, Å (for a crystal: the central molecule).
        reference: for a crystal, the real cluster ``(numbers (M, n), positions (M, n, 3))``.
        notes: remarks kept in the report (Z' > 1, several frames, hydrogens added, ...).
    """

    name: str
    kind: str
    source: str
    numbers: np.ndarray
    positions: np.ndarray
    reference: tuple[np.ndarray, np.ndarray] | None = None
    crystal_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def formula(self) -> str:
        from kflow_mol.data.crystals import hill_formula

        return hill_formula(self.numbers)


def input_kind(path: Path) -> str | None:
    """``"crystal"``, ``"molecule"`` or None (not a structure file) by file name; XYZ is decided
    by its content (a cell with periodic boundaries makes it a crystal)."""
    from kflow_mol.data.ase_source import ase_format

    suffix = path.suffix.lower()
    if suffix in CRYSTAL_SUFFIXES or ase_format(path) == "vasp":
        return "crystal"
    if suffix in MOLECULE_SUFFIXES:
        return "molecule"
    return None


def read_input(
    source: str | Path,
    *,
    max_atoms: int = MAX_ATOMS,
    seed: int = 0,
    num_mols: int = 17,
) -> AssemblyInput:
    """Read a crystal file, a molecule file or a SMILES string.

    Args:
        source: a path, or a SMILES string (anything that is not an existing path).
        max_atoms: atoms per molecule allowed (the model's limit).
        seed: seed of the RDKit conformer of a SMILES.
        num_mols: cluster size (crystals: molecules cut around the centre).

    Raises:
        AssembleError: one line (unreadable file, bad SMILES, inorganic, polymeric, salt,
        over the atom limit, ...).
    """
    text = str(source)
    path = Path(text).expanduser()
    if not text.strip():
        raise AssembleError("input is empty: give a file, a folder or a SMILES string")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".smi":
            first = next((line.split()[0] for line in path.read_text().splitlines() if line.strip()), "")
            molecule = _smiles_molecule(first, seed, path.stem)
            molecule.source = str(path)
        elif suffix in (".xyz", ".extxyz"):
            molecule = _xyz_input(path, max_atoms, num_mols)
        elif input_kind(path) == "crystal":
            molecule = _crystal_input(path, max_atoms, num_mols)
        elif suffix in (".sdf", ".mol"):
            molecule = _rdkit_file_molecule(path)
        elif suffix == ".pdb":
            molecule = _ase_molecule(path)
        else:
            known = sorted({*MOLECULE_SUFFIXES, *CRYSTAL_SUFFIXES, "POSCAR"})
            raise AssembleError(f"input {path}: unknown file type {path.suffix or path.name!r}; use one of {known}")
    elif path.exists():
        raise AssembleError(f"input {path} is a folder: use run_batch (the script does) or give one file")
    elif _looks_like_path(text):
        raise AssembleError(f"input {text} does not exist (and is not a SMILES string)")
    else:
        molecule = _smiles_molecule(text, seed)
    if molecule.kind != "crystal":
        check_molecule(molecule.numbers, molecule.positions, molecule.name, max_atoms)
    return molecule


def _looks_like_path(text: str) -> bool:
    """A string meant as a file (a structure-file suffix, or a folder-like prefix), not a SMILES."""
    suffix = Path(text).suffix.lower()
    return suffix in MOLECULE_SUFFIXES or suffix in CRYSTAL_SUFFIXES or text.startswith(("./", "../", "~", "/"))


def _smiles_molecule(smiles: str, seed: int, name: str = "smiles") -> AssemblyInput:
    """An RDKit ETKDG conformer of a SMILES (explicit H), MMFF-optimised (UFF without MMFF types)."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None:
        raise AssembleError(f"input {smiles!r} is neither an existing file nor a SMILES string RDKit can parse")
    if len(Chem.GetMolFrags(mol)) > 1:
        raise AssembleError(
            f"input {smiles!r} has {len(Chem.GetMolFrags(mol))} components (a salt, solvate or co-crystal): "
            "the model packs copies of one molecule"
        )
    mol = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = 0xF00D + int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise AssembleError(f"input {smiles!r}: RDKit could not embed a 3D conformer")
    notes = ["conformer: RDKit ETKDGv3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if AllChem.MMFFHasAllMoleculeParams(mol):
            AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
            notes[0] += ", MMFF94-optimised"
        else:
            AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
            notes[0] += ", UFF-optimised (no MMFF parameters)"
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return AssemblyInput(name, "smiles", smiles, numbers, positions, notes=notes)


def _rdkit_file_molecule(path: Path) -> AssemblyInput:
    """The first molecule of an SDF / MOL file with its coordinates (missing H added with coordinates)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        supplier = Chem.SDMolSupplier(str(path), removeHs=False)
        mol = next((m for m in supplier if m is not None), None)
    except OSError as error:
        raise AssembleError(f"input {path}: {error}") from None
    if mol is None or mol.GetNumConformers() == 0:
        raise AssembleError(f"input {path}: RDKit reads no molecule with coordinates from it")
    notes = []
    if mol.GetConformer().Is3D() is False:
        notes.append("the file's conformer is flagged 2D")
    if any(atom.GetTotalNumHs() for atom in mol.GetAtoms()):
        mol = Chem.AddHs(mol, addCoords=True)
        notes.append("implicit hydrogens added with coordinates (RDKit)")
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
    positions = np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    return AssemblyInput(path.stem, "molecule", str(path), numbers, positions, notes=notes)


def _read_ase(path: Path, fmt: str | None = None) -> list:
    import ase.io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            images = ase.io.read(str(path), index=":", format=fmt)
    except Exception as error:  # noqa: BLE001 - any reader failure is one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AssembleError(f"input {path}: cannot be read ({type(error).__name__}: {first})") from None
    images = images if isinstance(images, list) else [images]
    if not images or len(images[0]) == 0:
        raise AssembleError(f"input {path}: no atoms in the file")
    return images


def _ase_molecule(path: Path, images: list | None = None) -> AssemblyInput:
    images = images if images is not None else _read_ase(path)
    atoms = images[0]
    notes = [f"{len(images)} frames in the file: the first is used"] if len(images) > 1 else []
    return AssemblyInput(
        path.stem,
        "molecule",
        str(path),
        np.asarray(atoms.numbers, dtype=np.int64),
        np.asarray(atoms.positions, dtype=np.float64),
        notes=notes,
    )


def _xyz_input(path: Path, max_atoms: int, num_mols: int) -> AssemblyInput:
    """An XYZ file: a crystal when its first frame has a full cell and periodic boundaries, else one molecule."""
    images = _read_ase(path, "extxyz")
    atoms = images[0]
    if atoms.cell.rank == 3 and bool(np.all(atoms.pbc)):
        return _crystal_input(path, max_atoms, num_mols)
    return _ase_molecule(path, images)


def _crystal_input(path: Path, max_atoms: int, num_mols: int) -> AssemblyInput:
    """Read a crystal, find its molecules and cut the cluster around the first independent one."""
    from kflow_mol.data.clusters import cut_clusters
    from kflow_mol.data.crystals import CrystalRejected, perceive_molecules, read_cif

    notes = []
    try:
        if path.suffix.lower() in (".cif", ".mmcif"):
            crystal = read_cif(path)
        else:
            from kflow_mol.data.ase_source import frame_crystal, read_frames

            frames = read_frames(path)
            if len(frames) > 1:
                notes.append(f"{len(frames)} structures in the file: the first is used")
            crystal = frame_crystal(frames[0], frames[0].name or path.stem, "ase")
        molecular = perceive_molecules(crystal, max_atoms)
        clusters = cut_clusters(molecular, num_mols)
    except CrystalRejected as error:
        hint = f" (the model's limit is {max_atoms} atoms per molecule)" if error.reason == "too_many_atoms" else ""
        raise AssembleError(f"input {path}: {error.reason}: {error.detail}{hint}") from None
    except AssembleError:
        raise
    except Exception as error:  # noqa: BLE001 - a reader's own failure is one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AssembleError(f"input {path}: cannot be read as a crystal ({type(error).__name__}: {first})") from None
    if len(clusters) > 1:
        notes.append(
            f"Z' = {len(clusters)} (symmetry-independent molecules): the cluster around the first one is used; "
            "the model was trained on such clusters but Z' > 1 packings are outside what it reliably predicts"
        )
    cluster = clusters[0]
    return AssemblyInput(
        path.stem,
        "crystal",
        str(path),
        cluster.numbers[0].copy(),
        cluster.positions[0].copy(),
        reference=(cluster.numbers, cluster.positions),
        crystal_id=cluster.crystal_id,
        notes=notes,
    )


def check_molecule(numbers: np.ndarray, positions: np.ndarray, name: str, max_atoms: int = MAX_ATOMS) -> None:
    """Refuse what the model cannot pack: other elements, no H, several fragments, too many atoms.

    Raises:
        AssembleError: naming the problem (the reasons of :mod:`kflow_mol.data.crystals`).
    """
    from ase.data import chemical_symbols

    from kflow_mol.data.crystals import ORGANIC_ELEMENTS

    elements = set(np.asarray(numbers).tolist())
    if 6 not in elements or not elements <= ORGANIC_ELEMENTS:
        others = sorted(chemical_symbols[z] for z in elements - ORGANIC_ELEMENTS)
        problem = f"non-organic elements {others}" if others else "no carbon"
        raise AssembleError(f"input {name}: not_organic: {problem}")
    if 1 not in elements:
        raise AssembleError(f"input {name}: missing_h: no H atoms (the model packs molecules with explicit hydrogens)")
    if len(numbers) > max_atoms:
        raise AssembleError(
            f"input {name}: too_many_atoms: {len(numbers)} atoms per molecule > {max_atoms} (the model's limit)"
        )
    fragments = len(molecule_fragments(numbers, positions))
    if fragments > 1:
        raise AssembleError(
            f"input {name}: multiple_molecules: {fragments} covalently separate fragments (a salt, solvate or "
            "several molecules): the model packs copies of one molecule"
        )


def molecule_fragments(numbers: np.ndarray, positions: np.ndarray, tolerance: float = 0.4) -> list[np.ndarray]:
    """Covalently connected groups (covalent radii + ``tolerance`` Å, the crystal reader's rule)."""
    from ase.data import covalent_radii
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    radii = covalent_radii[np.asarray(numbers)]
    pairs = cKDTree(positions).query_pairs(2 * radii.max() + tolerance, output_type="ndarray")
    if len(pairs):
        distance = np.linalg.norm(positions[pairs[:, 0]] - positions[pairs[:, 1]], axis=1)
        pairs = pairs[distance < radii[pairs[:, 0]] + radii[pairs[:, 1]] + tolerance]
    n = len(numbers)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else None
    if graph is None:
        return [np.array([i]) for i in range(n)]
    count, labels = connected_components(graph, directed=False)
    return [np.flatnonzero(labels == c) for c in range(count)]


# ----- start states -----------------------------------------------------------------------------
def van_der_waals_volume(numbers: np.ndarray, positions: np.ndarray, grid: float = 0.25) -> float:
    """Van der Waals volume of one molecule, Å^3 (RDKit ``ComputeMolVolume``, grid ``grid`` Å)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    editable = Chem.RWMol()
    for z in numbers:
        editable.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(len(numbers))
    for i, p in enumerate(np.asarray(positions, dtype=float)):
        conformer.SetAtomPosition(i, Point3D(*p))
    mol = editable.GetMol()
    mol.AddConformer(conformer)
    return float(AllChem.ComputeMolVolume(mol, gridSpacing=grid))


def fcc_sites(count: int, volume: float) -> np.ndarray:
    """The ``count`` sites of an fcc lattice (``volume`` Å^3 per site) nearest to a site, that site first."""
    a = (4.0 * volume) ** (1 / 3)
    span = max(2, math.ceil((count / 4) ** (1 / 3)) + 1)
    grid = np.arange(-span, span + 1)
    cells = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    points = (cells[:, None] + basis[None]).reshape(-1, 3) * a
    distance = np.linalg.norm(points, axis=1)
    order = np.lexsort((points[:, 2], points[:, 1], points[:, 0], np.round(distance, 6)))[:count]
    return points[order]


def molecule_start(
    molecule: AssemblyInput, num_mols: int, start: str, seed: int, repeat: int = 0, vdw_volume: float | None = None
):
    """An :class:`~kflow_mol.data.dataset.AssemblyData` of ``num_mols`` rigid copies in a start state.

    Crystals: the real cluster with a start drawn as the data pipeline draws it (same seed
    stream: :func:`~kflow_mol.data.start_states.start_rng` of (seed, crystal id, repeat, centre)).
    Lone molecules: the virtual fcc crystal of typical organic density (module docstring) as
    the "target" of the start preset; its poses are never used as a reference.

    Returns:
        ``(data, info)``: the cluster and a dict describing the start (box, density).
    """
    from kflow_mol.data.dataset import cluster_body_frames, rigid_cluster_data
    from kflow_mol.data.start_states import draw_start_state, start_rng, start_scheme

    scheme = start_scheme(start)
    if molecule.reference is not None:
        numbers, positions = molecule.reference
        rot_target, trans_target, body = cluster_body_frames(positions)
        crystal_id = molecule.crystal_id or molecule.name
        info = {"kind": "crystal", "preset": start}
    else:
        from kflow_mol.data.clusters import body_frame

        rotation, _, body_one = body_frame(molecule.positions)
        body = np.repeat(body_one[None], num_mols, axis=0)
        numbers = np.repeat(molecule.numbers[None], num_mols, axis=0)
        vdw = vdw_volume if vdw_volume is not None else van_der_waals_volume(molecule.numbers, molecule.positions)
        volume = vdw / PACKING_COEFFICIENT
        trans_target = fcc_sites(num_mols, volume)
        rot_target = np.repeat(np.eye(3)[None], num_mols, axis=0)
        crystal_id = f"{molecule.name}:{molecule.formula}"
        centre = trans_target.mean(axis=0)
        radius = float(np.linalg.norm(trans_target - centre, axis=1).max())
        info = {
            "kind": "virtual_fcc",
            "preset": start,
            "vdw_volume_A3": round(vdw, 2),
            "packing_coefficient": PACKING_COEFFICIENT,
            "volume_per_molecule_A3": round(volume, 2),
            "cluster_radius_A": round(radius, 3),
        }
        if scheme.displacement == "box":
            half = scheme.scale * radius
            info["box_half_width_A"] = round(half, 3)
            info["box_density_g_cm3"] = round(
                num_mols * molecular_mass(molecule.numbers) * AMU_G_CM3 / (2 * half) ** 3, 4
            )
    rng = start_rng(seed, crystal_id, repeat, 0)
    rot_start, trans_start = draw_start_state(body, rot_target, trans_target, scheme, rng, crystal_id)
    meta = {
        "cluster_id": f"{crystal_id}_r{repeat}_c0",
        "crystal_id": crystal_id,
        "formula": molecule.formula,
        "source": molecule.kind,
        "synthetic": molecule.reference is None,
        "start_scheme": scheme.name,
    }
    data = rigid_cluster_data(numbers, body, rot_start, trans_start, rot_target, trans_target, meta)
    return data, info


def molecular_mass(numbers: np.ndarray) -> float:
    """Mass of one molecule, amu."""
    from ase.data import atomic_masses

    return float(atomic_masses[np.asarray(numbers)].sum())


# ----- the model --------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A trained assembly model ready to predict.

    Attributes:
        path: the checkpoint file.
        name: its method name (``kflow_K2``).
        cfg: its run config (:class:`~kflow_mol.config.AssemblyConfig`).
        run: the flow and network (:class:`~kflow_mol.experiment.TrainedRun`).
        info: what the file says about itself (shipped files), or {}.
    """

    path: Path
    name: str
    cfg: Any
    run: Any
    info: dict

    @property
    def max_atoms(self) -> int:
        return int(self.info.get("max_atoms", MAX_ATOMS))

    @property
    def trained_start(self) -> str | None:
        return self.info.get("start") or self.cfg.data.start

    def describe(self) -> dict:
        """The report's ``model`` entry."""
        return {
            "path": str(self.path),
            "name": self.name,
            "K": self.cfg.K,
            "preset": self.cfg.model.preset,
            "system": self.cfg.system,
            "trained_on": self.info.get("data", self.cfg.data.source),
            "trained_start": self.trained_start,
            "train_steps": self.info.get("train_steps"),
            "sample_method": self.cfg.sample.method,
            "sample_steps": self.cfg.sample.steps,
        }


def package_info(cfg: Any, **extra) -> dict:
    """The self-description a shipped model file carries under :data:`PACKAGE_KEY`."""
    return {
        "format": PACKAGE_FORMAT,
        "system": cfg.system,
        "mode": cfg.flow.mode,
        "head": cfg.model.head,
        "K": cfg.K,
        "preset": cfg.model.preset,
        "start": cfg.data.start,
        "max_atoms": MAX_ATOMS,
        **extra,
    }


def resolve_model_path(model: str | Path, start: str = "local") -> Path:
    """``"default"`` -> the shipped model for ``start`` (:data:`DEFAULT_SCRAMBLED_MODEL` for
    scrambled starts when it is shipped, else :data:`DEFAULT_MODEL`); anything else is a path."""
    if str(model) != "default":
        return Path(model).expanduser()
    if start == "scrambled" and DEFAULT_SCRAMBLED_MODEL.is_file():
        return DEFAULT_SCRAMBLED_MODEL
    return DEFAULT_MODEL


def expected_of(path: Path) -> dict | None:
    """What this code expects of a shipped file (None for any other checkpoint)."""
    path = Path(path).resolve()
    if path == DEFAULT_MODEL.resolve():
        return EXPECTED_DEFAULT
    if path == DEFAULT_SCRAMBLED_MODEL.resolve():
        return {**EXPECTED_DEFAULT, "start": "scrambled"}
    return None


_MODEL_CACHE: dict[tuple[str, float], LoadedModel] = {}


def load_model(model: str | Path = "default", device: str = "cpu", start: str = "local") -> LoadedModel:
    """Load the shipped model or any checkpoint ``scripts/train_assembly.py`` wrote (``weights_only=True``).

    Checks: the file exists and is a kflow checkpoint of this format version; it holds an
    assembly run config that this code builds (else: another system or version); the network
    accepts its weights exactly; a shipped file's self-description agrees with its run config
    and, for the shipped files, with :data:`EXPECTED_DEFAULT` (:func:`expected_of`).

    Args:
        model: ``"default"`` or a checkpoint path.
        device: where the network goes.
        start: the start preset it will be used with (picks the shipped file for ``"default"``).

    Raises:
        AssembleError: one line naming the problem.
    """
    from kflow_mol.config import AssemblyConfig, run_name, to_config
    from kflow_mol.experiment import TrainedRun, build_flow, checkpoint_network

    path = resolve_model_path(model, start)
    if not path.is_file():
        if str(model) == "default":
            raise AssembleError(
                f"the shipped model {path} is missing: run scripts/export_default_model.py checkpoint=<best.pt>, "
                "or pass model=<checkpoint>"
            )
        raise AssembleError(f"checkpoint {path} does not exist")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    try:
        state = load_checkpoint(path, map_location=device)
    except (CheckpointError, FileNotFoundError) as error:
        raise AssembleError(str(error).strip().splitlines()[0]) from None
    saved = state.get("run_config")
    needed = ("K", "system", "model", "flow", "data", "translation_scale")
    if not isinstance(saved, dict) or any(name not in saved for name in needed):
        raise AssembleError(
            f"checkpoint {path} is not a molecular-assembly checkpoint (written by another system: no assembly "
            "run config with K, system, model, flow, data and translation_scale)"
        )
    saved = dict(saved)
    sigma = float(saved.pop("translation_scale"))
    try:
        cfg = to_config(saved, AssemblyConfig)
        flow = build_flow(cfg, sigma)
        network = checkpoint_network(cfg, state, device)
    except (ConfigError, ValueError, RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AssembleError(
            f"checkpoint {path} was written by another version of kflow_mol (this code cannot rebuild it: {first})"
        ) from None
    info = state.get(PACKAGE_KEY) or {}
    if info:
        _check_package(path, info, cfg, expected=expected_of(path))
    loaded = LoadedModel(path, run_name(cfg), cfg, TrainedRun(run_name(cfg), flow, network, None), dict(info))
    _MODEL_CACHE[key] = loaded
    return loaded


def _check_package(path: Path, info: dict, cfg: Any, expected: dict | None) -> None:
    if info.get("format") != PACKAGE_FORMAT:
        raise AssembleError(
            f"model file {path} has package format {info.get('format')!r}, this code reads {PACKAGE_FORMAT}: "
            "re-export it with scripts/export_default_model.py"
        )
    actual = package_info(cfg)
    for name in ("system", "mode", "head", "K", "preset", "start"):
        if info.get(name) != actual[name]:
            raise AssembleError(
                f"model file {path} says {name}={info.get(name)!r} but its run config builds {name}={actual[name]!r}"
            )
    for name, value in (expected or {}).items():
        if info.get(name) != value:
            raise AssembleError(
                f"model file {path} is a {name}={info.get(name)!r} model; this code expects {name}={value!r} "
                "(EXPECTED_DEFAULT in kflow_mol/assemble.py)"
            )


def export_model(checkpoint: str | Path, output: str | Path = DEFAULT_MODEL, max_mb: float = 5.0, **extra) -> Path:
    """Write a training checkpoint as a shipped model file: weights (EMA when kept) + run config +
    self-description (:func:`package_info`), no optimizer state; ``scripts/export_default_model.py``.

    The checkpoint is loaded and checked first (:func:`load_model`); writing the default file
    also checks it against :data:`EXPECTED_DEFAULT`.

    Raises:
        AssembleError: a bad checkpoint, a mismatch, or a file over ``max_mb`` MB.
    """
    from datetime import UTC, datetime

    from kflow.training.checkpoint import save_checkpoint

    loaded = load_model(checkpoint)
    state = load_checkpoint(Path(checkpoint))
    info = package_info(
        loaded.cfg,
        data=loaded.cfg.data.source,
        train_steps=int(state.get("step") or 0),
        source_checkpoint=str(checkpoint),
        exported_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    )
    output = Path(output)
    if expected_of(output) is not None:
        _check_package(output, info, loaded.cfg, expected_of(output))
    shipped = {
        "format_version": state["format_version"],
        "kflow_version": state.get("kflow_version"),
        "signature": state.get("signature", {}),
        "step": state.get("step"),
        "run_config": state["run_config"],
        "model": state["ema"] if state.get("ema") is not None else state["model"],
        "ema": None,
        PACKAGE_KEY: info,
    }
    save_checkpoint(output, shipped)
    output.chmod(0o644)  # the atomic writer's temp file is private; a package file is readable by all
    size_mb = output.stat().st_size / 1e6
    if size_mb > max_mb:
        output.unlink()
        raise AssembleError(f"{output}: {size_mb:.1f} MB > {max_mb} MB: too large to ship in the package")
    load_model(output)  # the written file loads and passes its own checks
    return output


# ----- physical checks --------------------------------------------------------------------------
def contact_ratios(numbers: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per molecule: the closest atom of another molecule (Å) and that distance over the pair's
    Bondi van der Waals radius sum.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.

    Returns:
        ``(distance (M,), ratio (M,))``.
    """
    from ase.data import vdw_radii
    from scipy.spatial import cKDTree

    radii = vdw_radii[numbers]  # Bondi; defined for every element of the organic set
    num_mols = positions.shape[0]
    distance = np.full(num_mols, np.inf)
    ratio = np.full(num_mols, np.inf)
    trees = [cKDTree(p) for p in positions]
    for m in range(num_mols):
        others = np.concatenate([positions[o] for o in range(num_mols) if o != m])
        other_r = np.concatenate([radii[o] for o in range(num_mols) if o != m])
        d, j = trees[m].query(others)  # nearest atom of m to every other atom
        best = int(np.argmin(d))
        distance[m] = d[best]
        ratio[m] = np.min(d / (other_r + radii[m][j]))
    return distance, ratio


def packing_estimate(numbers: np.ndarray, positions: np.ndarray, vdw_volume: float | None = None) -> dict:
    """Volume per molecule, density and packing coefficient of a cluster.

    The volume per molecule is the Voronoi cell of the centroid nearest the cluster centre
    among all centroids (in a crystal: the volume per molecule of a Z' = 1 cell, up to the
    centroid-vs-shape approximation); when that cell is unbounded, ``(R / 1.593)^3`` from the
    cluster radius R (the fcc calibration). Density = molecular mass / volume; packing
    coefficient = van der Waals volume / volume (typical organic crystals: 0.65-0.77).
    """
    from scipy.spatial import ConvexHull, Voronoi

    centroids = positions.mean(axis=1)
    centre = centroids.mean(axis=0)
    central = int(np.argmin(np.linalg.norm(centroids - centre, axis=1)))
    volume, method = None, "voronoi"
    try:
        voronoi = Voronoi(centroids)
        region = voronoi.regions[voronoi.point_region[central]]
        if region and -1 not in region:
            volume = float(ConvexHull(voronoi.vertices[region]).volume)
    except Exception:  # noqa: BLE001 - degenerate (coplanar) centroids: use the radius estimate
        volume = None
    radius = float(np.linalg.norm(centroids - centre, axis=1).max())
    if volume is None or not np.isfinite(volume) or volume <= 0:
        volume, method = (radius / FCC_RADIUS_RATIO) ** 3, "cluster_radius"
    mass = molecular_mass(numbers[0])
    out = {
        "method": method,
        "volume_per_molecule_A3": round(volume, 2),
        "density_g_cm3": round(mass * AMU_G_CM3 / volume, 4),
        "cluster_radius_A": round(radius, 3),
    }
    if vdw_volume is not None:
        out["packing_coefficient"] = round(vdw_volume / volume, 4)
    return out


def physical_report(numbers: np.ndarray, positions: np.ndarray, vdw_volume: float | None = None) -> dict:
    """Closest contact, collision and separation percentages, contact score and packing of one cluster.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.
        vdw_volume: the molecule's van der Waals volume (for the packing coefficient).
    """
    from kflow_mol.metrics.contacts import collision_rate, separation_rate

    z = torch.as_tensor(numbers.reshape(-1))
    pos = torch.as_tensor(positions.reshape(-1, 3), dtype=torch.float64)
    mol = torch.arange(positions.shape[0]).repeat_interleave(positions.shape[1])
    collision = collision_rate(pos, z, mol)
    separation = separation_rate(pos, mol)
    distance, ratio = contact_ratios(numbers, positions)
    return {
        "closest_contact_A": round(float(distance.min()), 4),
        "closest_contact_vdw_ratio": round(float(ratio.min()), 4),
        "median_molecule_contact_vdw_ratio": round(float(np.median(ratio)), 4),
        "contact_score": round(float(np.mean(np.abs(ratio - TYPICAL_CONTACT_RATIO))), 4),
        "collision_pct": round(100 * float(collision.rate), 4),
        "colliding_pairs": int(collision.count) // 2,
        "separation_pct": round(100 * float(separation.rate), 2),
        "packing": packing_estimate(numbers, positions, vdw_volume),
    }


def relax_clashes(
    numbers: np.ndarray, positions: np.ndarray, ratio: float = RELAX_RATIO, max_iterations: int = 200
) -> tuple[np.ndarray, dict]:
    """Remove atom clashes between molecules by rigid translations only (orientations untouched).

    While two molecules have atoms closer than ``ratio`` x (Bondi vdW sum), both are moved apart
    along the line between their centroids by half the deepest such overlap (plus 0.01 Å);
    all clashing pairs move at once, repeated until none is left or ``max_iterations``. Every
    molecule stays a rigid copy; the result is deterministic.

    Args:
        numbers: (M, n) atomic numbers.
        positions: (M, n, 3) coordinates.
        ratio: contacts below this fraction of the vdW sum count as clashes (0.7: below nearly
            every contact of real crystals, strong hydrogen bonds excepted).

    Returns:
        ``(positions (M, n, 3), info)`` with the iterations, the largest total shift of a
        molecule (Å) and whether clashes remain.
    """
    from ase.data import vdw_radii
    from scipy.spatial import cKDTree

    num_mols, n = numbers.shape
    radii = vdw_radii[numbers.reshape(-1)]
    owner = np.repeat(np.arange(num_mols), n)
    shift = np.zeros((num_mols, 3))
    base = positions.reshape(-1, 3)
    cutoff = ratio * 2 * float(radii.max())
    iterations = 0
    for iterations in range(max_iterations + 1):
        current = base + shift[owner]
        pairs = cKDTree(current).query_pairs(cutoff, output_type="ndarray")
        if len(pairs):
            pairs = pairs[owner[pairs[:, 0]] != owner[pairs[:, 1]]]
        if len(pairs):
            distance = np.linalg.norm(current[pairs[:, 0]] - current[pairs[:, 1]], axis=1)
            overlap = ratio * (radii[pairs[:, 0]] + radii[pairs[:, 1]]) - distance
            keep = overlap > 0
            pairs, overlap = pairs[keep], overlap[keep]
        if not len(pairs) or iterations == max_iterations:
            break
        a, b = owner[pairs[:, 0]], owner[pairs[:, 1]]
        key = np.minimum(a, b) * num_mols + np.maximum(a, b)
        deepest = np.zeros(num_mols * num_mols)
        np.maximum.at(deepest, key, overlap)
        centroids = positions.mean(axis=1) + shift
        move = np.zeros_like(shift)
        for k in np.flatnonzero(deepest):
            i, j = divmod(int(k), num_mols)
            direction = centroids[i] - centroids[j]
            length = np.linalg.norm(direction)
            direction = direction / length if length > 1e-6 else np.array([1.0, 0.0, 0.0])
            step = 0.5 * deepest[k] + 0.01
            move[i] += step * direction
            move[j] -= step * direction
        shift += move
    info = {
        "ratio": ratio,
        "iterations": int(iterations),
        "max_shift_A": round(float(np.linalg.norm(shift, axis=1).max()), 4),
        "clashes_left": bool(len(pairs)),
    }
    return positions + shift[:, None, :], info


def best_draw(draws: Sequence[dict]) -> int:
    """Index of the physically best draw: fewest colliding atom pairs (of the output, then of the
    network's raw prediction before clash removal), then the smallest contact score (mean
    |closest-contact / vdW sum - typical| over molecules), then the first."""

    def key(i: int) -> tuple:
        raw = draws[i].get("raw", draws[i])
        return (draws[i]["colliding_pairs"], raw["colliding_pairs"], draws[i]["contact_score"], i)

    return min(range(len(draws)), key=key)


def reference_scores(pred: np.ndarray, target: np.ndarray, start: np.ndarray) -> dict:
    """PM-atom / PM-center of the prediction and of the start (identity) against the real cluster."""
    from kflow_mol.metrics.packing import pm_atom, pm_center

    num_mols, n = target.shape[:2]
    mol = torch.arange(num_mols).repeat_interleave(n)

    def flat(x):
        return torch.as_tensor(x.reshape(-1, 3), dtype=torch.float64)

    return {
        "pm_atom": round(float(pm_atom(flat(target), flat(pred))), 4),
        "pm_center": round(float(pm_center(flat(target), flat(pred), mol)), 4),
        "identity_pm_atom": round(float(pm_atom(flat(target), flat(start))), 4),
        "identity_pm_center": round(float(pm_center(flat(target), flat(start), mol)), 4),
    }


# ----- assembling -------------------------------------------------------------------------------
@dataclass
class AssemblyResult:
    """A predicted cluster.

    Attributes:
        name: the input's name (file stem or ``"smiles"``).
        species: (A,) atomic numbers, A = ``num_mols * n``.
        positions: (A, 3) predicted positions, Å.
        mol_index: (A,) molecule of every atom.
        start: (A, 3) the start state of the kept draw.
        trajectory: (F, A, 3) positions along k (start first, prediction last; with clash
            removal the last frame is the relaxed output, at the same k as the one before).
        ks: (F,) the k of every frame.
        report: the report (``report.json``).
        reference: (A, 3) the real cluster (crystal input), else None.
    """

    name: str
    species: np.ndarray
    positions: np.ndarray
    mol_index: np.ndarray
    start: np.ndarray
    trajectory: np.ndarray
    ks: np.ndarray
    report: dict
    reference: np.ndarray | None = None

    def write(self, folder: str | Path, png: bool = True) -> list[Path]:
        """Write the outputs into ``folder`` (:func:`write_result`)."""
        return write_result(self, folder, png=png)


def _draw_seeds(seed: int, samples: int) -> list[int]:
    return [int(seed) + i for i in range(samples)]


def assemble(
    molecule_or_path: str | Path | AssemblyInput,
    num_mols: int = 17,
    start: str = "scrambled",
    model: str | Path | LoadedModel = "default",
    samples: int = 1,
    seed: int = 0,
    *,
    relax: bool = True,
    steps: int | None = None,
    method: str | None = None,
    device: str = "cpu",
) -> AssemblyResult:
    """Predict how ``num_mols`` rigid copies of a molecule pack (or re-pack a crystal's cluster).

    Args:
        molecule_or_path: a SMILES string, a molecule file (SDF, MOL, PDB, XYZ), a crystal
            file (CIF, periodic XYZ, POSCAR, .res), or an :class:`AssemblyInput`.
        num_mols: copies in the cluster (17: the size the model was trained on).
        start: ``"scrambled"`` or ``"local"`` start preset.
        model: ``"default"`` (the shipped model), a checkpoint path, or a :class:`LoadedModel`.
        samples: start states drawn; the physically best prediction is kept (:func:`best_draw`).
        seed: seed of the conformer (SMILES) and of the start states (draw i uses ``seed + i``).
        relax: remove clashes between molecules by rigid translations (:func:`relax_clashes`)
            after the prediction; the network's raw prediction is scored under ``raw``.
        steps: sampler steps in total (None: the model's own ``sample.steps``).
        method: sampler method (None: the model's own).
        device: ``cpu`` or ``cuda``.

    Returns:
        An :class:`AssemblyResult`; ``result.write(folder)`` writes every output.

    Raises:
        AssembleError: bad input, model or option (one line).

    Example::

        >>> from kflow_mol import assemble
        >>> result = assemble("CC(=O)Oc1ccccc1C(=O)O")  # doctest: +SKIP
        >>> result.positions.shape, result.report["prediction"]["collision_pct"]  # doctest: +SKIP
        ((357, 3), 0.0)
    """
    tic = time.perf_counter()
    check_choice("start", start, STARTS)
    check_range("num_mols", num_mols, minimum=2)
    check_range("samples", samples, minimum=1)
    if steps is not None:
        check_range("steps", steps, minimum=1)
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device, start)
    if isinstance(molecule_or_path, AssemblyInput):
        molecule = molecule_or_path
    else:
        molecule = read_input(molecule_or_path, max_atoms=loaded.max_atoms, seed=seed, num_mols=num_mols)
    vdw = van_der_waals_volume(molecule.numbers, molecule.positions)
    clusters, start_info = [], None
    for draw_seed in _draw_seeds(seed, samples):
        data, info = molecule_start(molecule, num_mols, start, draw_seed, repeat=0, vdw_volume=vdw)
        clusters.append(data)
        start_info = start_info or info
    predictions = _predict(loaded, clusters, steps, method, device, seed)
    numbers = clusters[0].z.numpy().reshape(num_mols, -1)
    draws, outputs = [], []
    for index, (data, (raw, _, _)) in enumerate(zip(clusters, predictions)):
        target = data.pos_target.double().numpy().reshape(num_mols, -1, 3)
        start_state = data.pos_start.double().numpy().reshape(num_mols, -1, 3)
        raw = raw.reshape(num_mols, -1, 3)
        pos, relaxation = relax_clashes(numbers, raw) if relax else (raw, None)
        entry = {"sample": index, "seed": _draw_seeds(seed, samples)[index]}
        if molecule.reference is not None:
            entry.update(reference_scores(pos, target, start_state))
        entry.update(physical_report(numbers, pos, vdw))
        if relaxation is not None:
            entry["relaxation"] = relaxation
            entry["raw"] = {
                **(reference_scores(raw, target, start_state) if molecule.reference is not None else {}),
                **physical_report(numbers, raw, vdw),
            }
            entry["raw"].pop("packing")
        draws.append(entry)
        outputs.append(pos.reshape(-1, 3))
    best = best_draw(draws)
    data, (_, trajectory, ks), pos = clusters[best], predictions[best], outputs[best]
    if relax:  # the clash removal is the last frame of the trajectory
        trajectory = np.concatenate([trajectory, pos[None]])
        ks = np.append(ks, ks[-1])
    start_pos = data.pos_start.double().numpy()
    reference = data.pos_target.double().numpy() if molecule.reference is not None else None
    report = {
        "input": molecule.source,
        "name": molecule.name,
        "kind": molecule.kind,
        "formula": molecule.formula,
        "atoms_per_molecule": int(len(molecule.numbers)),
        "num_mols": int(num_mols),
        "start": start,
        "start_state": start_info,
        "seed": int(seed),
        "samples": int(samples),
        "model": loaded.describe(),
        "notes": list(molecule.notes),
        "vdw_volume_A3": round(vdw, 2),
        "chosen_sample": best,
        "relax": bool(relax),
        "selection": "fewest colliding pairs (output, then raw prediction), then contact_score "
        f"(mean |closest contact / vdW sum - {TYPICAL_CONTACT_RATIO}| over molecules)",
        "prediction": draws[best],
        "start_physical": physical_report(numbers, start_pos.reshape(num_mols, -1, 3), vdw),
        "draws": draws,
    }
    if loaded.trained_start and loaded.trained_start != start:
        report["notes"].append(
            f"the model was trained on {loaded.trained_start} starts; this {start} start is outside its training"
        )
    if reference is not None:
        report["reference"] = {
            "crystal_id": molecule.crystal_id,
            **physical_report(numbers, reference.reshape(num_mols, -1, 3), vdw),
        }
    report["wall_s"] = round(time.perf_counter() - tic, 3)
    return AssemblyResult(
        name=molecule.name,
        species=numbers.reshape(-1).copy(),
        positions=pos,
        mol_index=np.repeat(np.arange(num_mols), numbers.shape[1]),
        start=start_pos,
        trajectory=trajectory,
        ks=ks,
        report=report,
        reference=reference,
    )


def _predict(
    loaded: LoadedModel, clusters: list, steps: int | None, method: str | None, device: str, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run the model on every cluster in one batch: ``[(pos (A, 3), trajectory (F, A, 3), ks (F,))]``."""
    from torch_geometric.data import Batch

    from kflow_mol.experiment import flow_predictor

    cfg = loaded.cfg
    total = steps if steps is not None else (cfg.sample.steps if cfg.system == "kflow" else None)
    generator = torch.Generator().manual_seed(1_000_003 * int(seed)) if loaded.run.stochastic else None
    predict = flow_predictor(
        loaded.run.flow, loaded.run.model, method or cfg.sample.method, total, True, generator=generator
    )
    batch = Batch.from_data_list(clusters).to(device)
    with torch.no_grad():
        out = predict(batch)
    sizes = [int(c.num_nodes) for c in clusters]
    pieces = torch.split(out.pos.detach().double().cpu(), sizes)
    if out.trajectory:
        frames = torch.stack([f.detach().double().cpu() for f in out.trajectory])
        ks = np.asarray([float(k) for k in out.ks])
    else:
        frames = torch.stack([batch.pos_start.double().cpu(), out.pos.detach().double().cpu()])
        ks = np.asarray([0.0, float(loaded.run.flow.num_bands)])
    frame_pieces = torch.split(frames, sizes, dim=1)
    return [(p.numpy(), f.numpy(), ks) for p, f in zip(pieces, frame_pieces)]


def score_split(
    model: str | Path | LoadedModel = "default",
    start: str = "local",
    split: str = "test",
    data: str = "real",
    relax: bool = True,
    limit: int | None = None,
    progress: bool = False,
) -> dict:
    """Held-out scores of a model the way :func:`assemble` uses it (the model card's numbers).

    Every cluster of ``split`` of the data group ``data`` (built with ``start`` starts) is
    predicted from its start; PM-atom / PM-center against the crystal, the share of clusters
    without any collision, and the mean collision percentage are reported for the identity
    (the start), the network's raw prediction and, with ``relax``, after :func:`relax_clashes`.

    Returns:
        ``{"identity": {...}, "raw": {...}, "relaxed": {...}, "n": clusters, ...}``.
    """
    from tqdm import tqdm

    from kflow_mol.config import DataConfig
    from kflow_mol.experiment import load_split

    loaded = model if isinstance(model, LoadedModel) else load_model(model, start=start)
    clusters = load_split(DataConfig(source=data, start=start), split, limit=limit)
    if not clusters:
        raise AssembleError(f"no {split} clusters in data={data}")
    rows = {"identity": [], "raw": [], "relaxed": []}
    for cluster in tqdm(clusters, desc=f"score {start}", disable=not progress):
        (raw, _, _) = _predict(loaded, [cluster], None, None, "cpu", 0)[0]
        num_mols = int(cluster.num_mols)
        numbers = cluster.z.numpy().reshape(num_mols, -1)
        target = cluster.pos_target.double().numpy().reshape(num_mols, -1, 3)
        start_state = cluster.pos_start.double().numpy().reshape(num_mols, -1, 3)
        raw = raw.reshape(num_mols, -1, 3)
        states = {"identity": start_state, "raw": raw}
        if relax:
            states["relaxed"] = relax_clashes(numbers, raw)[0]
        for name, pos in states.items():
            scores = reference_scores(pos, target, start_state)
            physical = physical_report(numbers, pos)
            rows[name].append(
                {
                    "pm_atom": scores["pm_atom"],
                    "pm_center": scores["pm_center"],
                    "collision_pct": physical["collision_pct"],
                    "closest_contact_A": physical["closest_contact_A"],
                }
            )

    def summary(entries: list[dict]) -> dict:
        return {
            "pm_atom": round(float(np.mean([e["pm_atom"] for e in entries])), 4),
            "pm_center": round(float(np.mean([e["pm_center"] for e in entries])), 4),
            "collision_free_pct": round(100 * float(np.mean([e["collision_pct"] == 0 for e in entries])), 2),
            "collision_pct_mean": round(float(np.mean([e["collision_pct"] for e in entries])), 4),
            "closest_contact_A_median": round(float(np.median([e["closest_contact_A"] for e in entries])), 4),
        }

    out = {name: summary(entries) for name, entries in rows.items() if entries}
    for name in ("raw", "relaxed"):
        if name in out:
            out[name]["pm_atom_vs_identity"] = round(out[name]["pm_atom"] / out["identity"]["pm_atom"], 4)
    return {
        **out,
        "n": len(clusters),
        "data": data,
        "split": split,
        "start": start,
        "model": loaded.describe(),
        "cluster_ids": [c.cluster_id for c in clusters],
    }


# ----- outputs ----------------------------------------------------------------------------------
def check_writable(folder: str | Path) -> Path:
    """Check, without creating anything, that ``folder`` exists as a writable folder or can be created.

    Raises:
        AssembleError: when a part of the path is a file, or the nearest existing folder is not writable.
    """
    import os

    folder = Path(folder).expanduser()
    probe = folder.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise AssembleError(f"output folder {folder} cannot be written: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise AssembleError(f"output folder {folder} cannot be written: {probe} is not writable")
    return folder


def check_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) and check it can be written.

    Raises:
        AssembleError: when it cannot be created or written.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".kflow_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise AssembleError(f"output folder {folder} cannot be written: {reason}") from None
    return folder


def _atoms(species: np.ndarray, positions: np.ndarray, mol_index: np.ndarray, name: str):
    from ase import Atoms

    atoms = Atoms(numbers=species, positions=positions)
    atoms.set_array("mol", mol_index.astype(int))
    atoms.info["name"] = name
    return atoms


def _boxed(atoms, padding: float = 10.0):
    """A copy in an orthogonal P1 box with ``padding`` Å of vacuum (for CIF / PDB readers that want a cell)."""
    boxed = atoms.copy()
    low = boxed.positions.min(0) - padding
    lengths = np.maximum(boxed.positions.max(0) + padding - low, 1.0)
    boxed.positions -= low
    boxed.set_cell(np.diag(lengths))
    boxed.pbc = True
    return boxed


def write_result(result: AssemblyResult, folder: str | Path, png: bool = True) -> list[Path]:
    """Write one prediction through ``ase.io``.

    Files: ``<name>_predicted.cif`` (P1 box with vacuum; labels ``C12_m3`` carry the molecule),
    ``<name>_predicted.xyz`` (extended XYZ with a ``mol`` column), ``<name>_predicted.pdb``
    (one residue per molecule), ``<name>_start.xyz``, ``<name>_trajectory.xyz`` (one frame per
    saved k, ``k`` in each comment line), ``<name>_reference.xyz`` (crystal input),
    ``report.json`` and ``<name>.png`` (start and prediction side by side).

    Raises:
        AssembleError: when the folder cannot be written.
    """
    from ase.io import write

    folder = check_output_folder(folder)
    name = _safe(result.name)
    atoms = _atoms(result.species, result.positions, result.mol_index, name)
    paths = []
    labels = [f"{s}{i + 1}_m{m}" for i, (s, m) in enumerate(zip(atoms.get_chemical_symbols(), result.mol_index))]
    try:
        paths.append(folder / f"{name}_predicted.cif")
        write(paths[-1], _boxed(atoms), format="cif", labels=[labels])
        paths.append(folder / f"{name}_predicted.xyz")
        write(paths[-1], atoms, format="extxyz")
        paths.append(folder / f"{name}_predicted.pdb")
        pdb = atoms.copy()
        pdb.set_array("residuenumbers", result.mol_index.astype(int) + 1)
        write(paths[-1], pdb, format="proteindatabank")
        paths.append(folder / f"{name}_start.xyz")
        write(paths[-1], _atoms(result.species, result.start, result.mol_index, name), format="extxyz")
        frames = []
        relaxed = bool(result.report.get("relax")) and len(result.ks) > 1
        for index, (k, frame) in enumerate(zip(result.ks, result.trajectory)):
            image = _atoms(result.species, frame, result.mol_index, name)
            image.info["k"] = float(k)
            image.info["stage"] = "relaxed" if relaxed and index == len(result.ks) - 1 else "flow"
            frames.append(image)
        paths.append(folder / f"{name}_trajectory.xyz")
        write(paths[-1], frames, format="extxyz")
        if result.reference is not None:
            paths.append(folder / f"{name}_reference.xyz")
            write(paths[-1], _atoms(result.species, result.reference, result.mol_index, name), format="extxyz")
        paths.append(folder / "report.json")
        paths[-1].write_text(json.dumps(result.report, indent=2) + "\n")
        if png:
            paths.append(plot_result(result, folder / f"{name}.png"))
    except OSError as error:
        raise AssembleError(f"output folder {folder} cannot be written: {error.strerror or error}") from None
    return paths


def _safe(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep.strip("._") or "molecule"


def plot_result(result: AssemblyResult, path: str | Path, size: float = 3.4, dpi: int = 90) -> Path:
    """Start and prediction side by side (3D scatter, atoms coloured by molecule, H smaller)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2 * size, size + 0.3))
    FigureCanvasAgg(figure)
    colours = _molecule_colours(int(result.mol_index.max()) + 1)
    heavy = result.species > 1
    report = result.report
    panels = [("start", result.start), ("prediction", result.positions)]
    centred = [pos - pos.mean(0) for _, pos in panels]
    half = max(3.0, *(float(np.abs(c).max()) for c in centred))  # one scale: contraction shows
    for column, ((title, _), points) in enumerate(zip(panels, centred)):
        ax = figure.add_subplot(1, 2, column + 1, projection="3d")
        ax.scatter(*points[heavy].T, c=colours[result.mol_index[heavy]], s=14, depthshade=True, edgecolors="none")
        ax.scatter(*points[~heavy].T, c=colours[result.mol_index[~heavy]], s=4, alpha=0.6, edgecolors="none")
        for set_lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            set_lim(-half, half)
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.set_axis_off()
        pred = report.get("prediction", {})
        if title == "prediction":
            line = f"prediction: collisions {pred.get('collision_pct', 0):.2f}%"
            if "pm_atom" in pred:
                line += f"\nPM-atom {pred['pm_atom']:.2f} Å (start {pred['identity_pm_atom']:.2f})"
            else:
                density = pred.get("packing", {}).get("density_g_cm3")
                if density is not None:
                    line += f"\ndensity ≈ {density:.2f} g/cm³"
        else:
            line = f"{report.get('start', 'start')} start"
        ax.set_title(line, fontsize=8)
    figure.suptitle(f"{report.get('formula', '')}: {report.get('num_mols', '')} molecules", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return path


def _molecule_colours(count: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return np.array([cmap(i % 20) for i in range(count)])


# ----- the script's job -------------------------------------------------------------------------
@dataclass
class AssembleConfig:
    """``scripts/assemble.py``: pack one molecule, re-pack a crystal, or every file of a folder.

    Attributes:
        input: a SMILES string, a molecule or crystal file, or a folder of such files (batch).
        output: the output folder (batch: one sub-folder per input file, plus ``batch_report.json``);
            ``null``: ``outputs/assemble/<input name>``.
        num_mols: copies of the molecule (crystals: the cluster size cut).
        start: ``scrambled`` or ``local``.
        model: ``default`` (the shipped model) or a checkpoint path (any train_assembly.py checkpoint).
        samples: start states drawn per input; the physically best prediction is kept.
        seed: seed of the conformer and of the start states.
        steps: sampler steps in total (``null``: the model's own).
        method: sampler method (``null``: the model's own).
        device: ``cpu`` or ``cuda``.
        relax: remove clashes between molecules after the prediction by rigid translations
            (the raw prediction is scored in the report under ``raw``).
        png: write the PNG.
        progress: the batch progress bar.
        cpu_threads: torch threads (``null``: torch's default).
    """

    input: str | None = None
    output: str | None = None
    num_mols: int = 17
    start: str = "scrambled"
    model: str = "default"
    samples: int = 1
    seed: int = 0
    steps: int | None = None
    method: str | None = None
    device: str = "cpu"
    relax: bool = True
    png: bool = True
    progress: bool = True
    cpu_threads: int | None = 1

    def __post_init__(self):
        check_choice("start", self.start, STARTS)
        check_range("num_mols", self.num_mols, minimum=2)
        check_range("samples", self.samples, minimum=1)
        if self.steps is not None:
            check_range("steps", self.steps, minimum=1)
        if self.cpu_threads is not None:
            check_range("cpu_threads", self.cpu_threads, minimum=1)


def batch_files(folder: Path) -> list[Path]:
    """The structure files of a folder (sorted; sub-folders and other files are not inputs)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and input_kind(p) is not None)


def run_assemble(cfg: AssembleConfig, echo: Callable[[str], None] | None = None) -> dict:
    """The script's job: one input, or a folder in batch mode.

    Returns:
        The report (single input) or the batch summary.

    Raises:
        AssembleError: a bad input (single mode), model, option or output folder (one line).
    """
    echo = echo or (lambda text: print(text, file=sys.stderr))
    if not cfg.input:
        raise AssembleError("input=<SMILES, molecule or crystal file, or folder> is required")
    if cfg.cpu_threads and str(cfg.device) == "cpu":
        torch.set_num_threads(int(cfg.cpu_threads))
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise AssembleError(f"device={cfg.device} but CUDA is not available on this machine")
    source = Path(str(cfg.input)).expanduser()
    name = _safe(source.name if source.exists() else "smiles")
    output = Path(cfg.output) if cfg.output else Path("outputs") / "assemble" / name
    check_writable(output)
    loaded = load_model(cfg.model, cfg.device, cfg.start)
    options = dict(
        num_mols=cfg.num_mols,
        start=cfg.start,
        model=loaded,
        samples=cfg.samples,
        seed=cfg.seed,
        steps=cfg.steps,
        relax=cfg.relax,
    )
    if source.is_dir():
        return run_batch(source, output, cfg, loaded, echo, options)
    result = assemble(str(cfg.input), method=cfg.method, device=cfg.device, **options)
    paths = write_result(result, output, png=cfg.png)
    echo(summary_line(result))
    echo(f"wrote {len(paths)} files to {output}/")
    return result.report


def summary_line(result: AssemblyResult) -> str:
    """One line: formula, PM (crystal input), collisions, closest contact, density, time."""
    pred = result.report["prediction"]
    parts = [f"{result.name} ({result.report['formula']}, {result.report['num_mols']} molecules)"]
    if "pm_atom" in pred:
        parts.append(
            f"PM-atom {pred['pm_atom']:.2f} Å / PM-center {pred['pm_center']:.2f} Å "
            f"(start {pred['identity_pm_atom']:.2f} / {pred['identity_pm_center']:.2f})"
        )
    parts.append(f"collisions {pred['collision_pct']:.2f}%")
    parts.append(f"separation {pred['separation_pct']:.1f}%")
    parts.append(f"closest contact {pred['closest_contact_A']:.2f} Å")
    parts.append(f"density ≈ {pred['packing']['density_g_cm3']:.2f} g/cm³")
    parts.append(f"{result.report['wall_s']:.1f} s")
    return ": ".join(parts[:2]) + ", " + ", ".join(parts[2:])


def run_batch(folder: Path, output: Path, cfg: AssembleConfig, loaded: LoadedModel, echo, options: dict) -> dict:
    """Every structure file of ``folder``: one sub-folder each; a failure is reported and counted,
    the other files are still done. Writes ``batch_report.json``."""
    from tqdm import tqdm

    files = batch_files(folder)
    if not files:
        raise AssembleError(f"input folder {folder} holds no molecule or crystal file")
    check_output_folder(output)
    done, failed = [], []
    bar = tqdm(files, desc="assemble", unit="file", disable=not cfg.progress, dynamic_ncols=True)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            result = assemble(str(path), method=cfg.method, device=cfg.device, **options)
            write_result(result, output / _safe(path.stem), png=cfg.png)
            pred = result.report["prediction"]
            done.append({"file": path.name, "output": str(output / _safe(path.stem)), **_brief(pred)})
        except Exception as error:  # noqa: BLE001 - one file's failure never stops the batch
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if not isinstance(error, ConfigError):
                text = f"{type(error).__name__}: {text}"
            failed.append({"file": path.name, "error": text})
            tqdm.write(f"assemble: {path.name}: failed: {text}", file=sys.stderr)
    summary = {
        "input": str(folder),
        "output": str(output),
        "files": len(files),
        "done": len(done),
        "failed": len(failed),
        "results": done,
        "failures": failed,
    }
    (output / "batch_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    echo(f"{len(done)} done + {len(failed)} failed = {len(files)} files; report in {output}/batch_report.json")
    return summary


def _brief(pred: dict) -> dict:
    keys = ("pm_atom", "pm_center", "identity_pm_atom", "collision_pct", "closest_contact_A", "separation_pct")
    return {key: pred[key] for key in keys if key in pred} | {"density_g_cm3": pred["packing"]["density_g_cm3"]}


class _CallableModule(types.ModuleType):
    """This module, callable: ``kflow_mol.assemble(...)`` and ``from kflow_mol import assemble`` then
    ``assemble(...)`` call :func:`assemble` (the package does not import torch until it is used)."""

    def __call__(self, *args, **kwargs) -> AssemblyResult:
        return assemble(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
