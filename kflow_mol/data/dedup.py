"""Find crystals that two collections both hold.

Two crystals from different collections are the same when they share a CSD refcode, or when
they have the same molecular formula and Niggli-reduced cells that agree within a tolerance
(lengths relative, angles absolute). The tolerances absorb temperature and refinement
differences (X-ray against DFT-relaxed positions in a fixed cell); polymorphs of one
compound have different cells and are kept (a formula-disjoint split keeps them together).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LENGTH_TOLERANCE = 0.03  # relative, per reduced cell length
ANGLE_TOLERANCE = 3.0  # degrees, per reduced cell angle
REFCODE = re.compile(r"^[A-Z]{6}(\d{2})?$")


@dataclass
class CrystalRecord:
    """What deduplication compares.

    Attributes:
        crystal_id: the (prefixed) crystal id.
        source: the collection's source tag.
        formula: Hill formula of one molecule.
        cell: ``(a, b, c, alpha, beta, gamma)`` of the Niggli-reduced cell (Å, degrees), or None.
        refcode: CSD refcode when known (upper case), else None.
    """

    crystal_id: str
    source: str
    formula: str
    cell: tuple[float, ...] | None = None
    refcode: str | None = None


def refcode_of(name: str | None) -> str | None:
    """A CSD refcode (``ABCDEF`` or ``ABCDEF01``) in a name: the whole name or its last ``_`` part."""
    if not name:
        return None
    for candidate in (name, name.rsplit("_", 1)[-1]):
        candidate = candidate.strip().upper()
        if REFCODE.match(candidate):
            return candidate
    return None


def reduced_cell(cell: np.ndarray) -> tuple[float, ...] | None:
    """Niggli-reduced cell parameters of a lattice.

    Args:
        cell: (3, 3) lattice vectors as rows, Å.

    Returns:
        ``(a, b, c, alpha, beta, gamma)`` or None when the reduction fails.
    """
    from pymatgen.core import Lattice

    try:
        with np.errstate(all="ignore"):
            lattice = Lattice(np.asarray(cell, dtype=float)).get_niggli_reduced_lattice()
    except Exception:  # noqa: BLE001 - a degenerate cell simply matches nothing
        return None
    return tuple(round(float(v), 4) for v in lattice.parameters)


def cells_match(
    first: tuple[float, ...], second: tuple[float, ...], length_tol: float = LENGTH_TOLERANCE, angle_tol=ANGLE_TOLERANCE
) -> bool:
    """Whether two reduced cells agree (an angle may also match its supplement, a Niggli edge case)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    lengths = np.abs(a[:3] - b[:3]) <= length_tol * np.maximum(a[:3], b[:3])
    angles = np.minimum(np.abs(a[3:] - b[3:]), np.abs(a[3:] - (180.0 - b[3:]))) <= angle_tol
    return bool(lengths.all() and angles.all())


def find_duplicates(records: list[CrystalRecord]) -> dict[str, str]:
    """Crystals that repeat one of an earlier collection.

    Records are taken in the given order (put the preferred collection first); a record is a
    duplicate when an earlier kept record of another source shares its refcode, or its
    formula and (within tolerance) its reduced cell.

    Returns:
        duplicate crystal id → one-line reason naming the crystal it repeats.
    """
    kept: list[CrystalRecord] = []
    duplicates: dict[str, str] = {}
    for record in records:
        match = next((k for k in kept if k.source != record.source and _same(k, record)), None)
        if match is None:
            kept.append(record)
            continue
        why = (
            f"refcode {record.refcode}"
            if record.refcode and record.refcode == match.refcode
            else f"formula {record.formula} and reduced cell {_cell_text(record.cell)} ~ {_cell_text(match.cell)}"
        )
        duplicates[record.crystal_id] = f"{record.crystal_id}: same crystal as {match.crystal_id} ({why})"
    return duplicates


def _same(first: CrystalRecord, second: CrystalRecord) -> bool:
    if first.refcode and first.refcode == second.refcode:
        return True
    if first.formula != second.formula or first.cell is None or second.cell is None:
        return False
    return cells_match(first.cell, second.cell)


def _cell_text(cell: tuple[float, ...] | None) -> str:
    return "?" if cell is None else " ".join(f"{v:.2f}" for v in cell)
