"""Reading what :func:`~kflow_mol.assemble.assemble` packs: a crystal file, a molecule file or a SMILES string.

Every refusal is one :class:`~kflow_mol.assemble.common.AssembleError` line naming the input and the problem."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kflow_mol.assemble.common import MAX_ATOMS, AssembleError

MOLECULE_SUFFIXES = {".sdf": "sdf", ".mol": "mol", ".pdb": "pdb", ".xyz": "xyz", ".extxyz": "xyz", ".smi": "smi"}


CRYSTAL_SUFFIXES = {".cif": "cif", ".mmcif": "cif", ".res": "ase", ".vasp": "ase", ".poscar": "ase", ".db": "ase"}


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
