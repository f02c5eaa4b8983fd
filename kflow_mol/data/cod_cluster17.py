"""Read and write the COD-Cluster17 CSV layout (as used by AssembleFlow).

``raw/FinalPositions/{id}_cluster16.csv`` holds the crystal cluster and
``raw/InitialPositions/{id}_cluster16_noised.csv`` the start state: a header line, then
one row ``mol_idx,atom_symbol,x,y,z`` (Å) per atom, molecules in file order, all with the
same atom count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers as ATOMIC_NUMBERS
from ase.data import chemical_symbols as CHEMICAL_SYMBOLS

from kflow_mol.data.crystals import CrystalRejected

HEADER = "mol_idx,atom_symbol,x,y,z"
FINAL_DIR = Path("raw") / "FinalPositions"
INITIAL_DIR = Path("raw") / "InitialPositions"


@dataclass
class ClusterFiles:
    """One cluster read back from the CSV layout.

    Attributes:
        cluster_id: the ``{id}`` of the file names.
        numbers: (M, n) atomic numbers.
        start: (M, n, 3) start coordinates, Å.
        target: (M, n, 3) crystal coordinates, Å.
    """

    cluster_id: str
    numbers: np.ndarray
    start: np.ndarray
    target: np.ndarray


def final_path(folder: Path, cluster_id: str) -> Path:
    return Path(folder) / FINAL_DIR / f"{cluster_id}_cluster16.csv"


def initial_path(folder: Path, cluster_id: str) -> Path:
    return Path(folder) / INITIAL_DIR / f"{cluster_id}_cluster16_noised.csv"


def write_cluster_csv(path: Path, numbers: np.ndarray, mol_index: np.ndarray, positions: np.ndarray) -> None:
    """Write one state.

    Args:
        path: output CSV.
        numbers: (A,) atomic numbers.
        mol_index: (A,) molecule of each atom.
        positions: (A, 3) coordinates, Å.
    """
    rows = [HEADER] + [
        f"{m},{CHEMICAL_SYMBOLS[int(z)]},{x:.6f},{y:.6f},{w:.6f}"
        for m, z, (x, y, w) in zip(mol_index.tolist(), numbers.tolist(), positions.tolist())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def write_cluster_pair(folder: Path, cluster_id: str, numbers, mol_index, start, target) -> None:
    """Write the start and crystal CSV files of one cluster (arrays as in :func:`write_cluster_csv`)."""
    write_cluster_csv(final_path(folder, cluster_id), np.asarray(numbers), np.asarray(mol_index), np.asarray(target))
    write_cluster_csv(initial_path(folder, cluster_id), np.asarray(numbers), np.asarray(mol_index), np.asarray(start))


def read_cluster_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one state.

    Returns:
        ``(numbers (M, n), positions (M, n, 3))``.

    Raises:
        CrystalRejected: ``bad_cluster_file`` naming the file and the problem.
    """
    path = Path(path)
    try:
        fast = _read_fast(path.read_text())
    except OSError as error:
        raise CrystalRejected("bad_cluster_file", f"{path}: {error}") from None
    if fast is not None:
        return fast
    molecules: dict[int, list[tuple[int, list[float]]]] = {}
    try:
        lines = path.read_text().splitlines()[1:]
        for line_no, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 5 or fields[1] not in ATOMIC_NUMBERS:
                raise ValueError(f"line {line_no}: expected 'mol_idx,atom_symbol,x,y,z', got {line!r}")
            xyz = [float(v) for v in fields[2:]]
            if not np.isfinite(xyz).all():
                raise ValueError(f"line {line_no}: non-finite coordinate in {line!r}")
            molecules.setdefault(int(fields[0]), []).append((ATOMIC_NUMBERS[fields[1]], xyz))
    except (OSError, ValueError) as error:
        raise CrystalRejected("bad_cluster_file", f"{path}: {error}") from None
    sizes = {len(atoms) for atoms in molecules.values()}
    if not molecules or len(sizes) != 1:
        raise CrystalRejected("bad_cluster_file", f"{path}: molecules have unequal atom counts {sorted(sizes)}")
    order = sorted(molecules)
    numbers = np.array([[z for z, _ in molecules[m]] for m in order], dtype=np.int64)
    positions = np.array([[p for _, p in molecules[m]] for m in order], dtype=np.float64)
    return numbers, positions


def _read_fast(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised :func:`read_cluster_csv` of a well-formed file (same arrays); None: let the line parser explain."""
    rows = [line for line in text.splitlines()[1:] if line.strip()]
    fields = ",".join(rows).split(",")
    if not rows or len(fields) != 5 * len(rows):
        return None
    try:
        symbols = [ATOMIC_NUMBERS[f.strip()] for f in fields[1::5]]
        mol = np.array([int(f) for f in fields[0::5]], dtype=np.int64)
        xyz = np.array([list(map(float, fields[k::5])) for k in (2, 3, 4)], dtype=np.float64).T
    except (KeyError, ValueError):
        return None
    if not np.isfinite(xyz).all():
        return None
    order = np.argsort(mol, kind="stable")
    _, counts = np.unique(mol, return_counts=True)
    if (counts != counts[0]).any():
        return None
    shape = (len(counts), int(counts[0]))
    return np.array(symbols, dtype=np.int64)[order].reshape(shape), xyz[order].reshape(*shape, 3)


def read_cluster_pair(folder: Path, cluster_id: str) -> ClusterFiles:
    """Read the start and crystal files of one cluster and check they match atom for atom."""
    numbers, target = read_cluster_csv(final_path(folder, cluster_id))
    start_numbers, start = read_cluster_csv(initial_path(folder, cluster_id))
    if start_numbers.shape != numbers.shape or (start_numbers != numbers).any():
        raise CrystalRejected("bad_cluster_file", f"{cluster_id}: start and final files list different atoms")
    compositions = np.sort(numbers, axis=1)
    if not (compositions == compositions[:1]).all():
        raise CrystalRejected("bad_cluster_file", f"{cluster_id}: molecules differ in composition")
    return ClusterFiles(cluster_id, numbers, start, target)


def list_cluster_ids(folder: Path) -> list[str]:
    """Ids of all clusters with a FinalPositions file, sorted."""
    final_dir = Path(folder) / FINAL_DIR
    if not final_dir.is_dir():
        raise FileNotFoundError(f"{final_dir}: no COD-Cluster17 FinalPositions folder")
    return sorted(p.name[: -len("_cluster16.csv")] for p in final_dir.glob("*_cluster16.csv"))
