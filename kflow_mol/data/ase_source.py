"""Periodic structures in any format ASE reads: one crystal per frame or database row.

Formats (by file name): extended XYZ (``.xyz``, ``.extxyz``, multi-frame), ASE databases
(``.db``), CIF (``.cif``, read by ASE here, not by the strict pymatgen reader of the ``cif``
source), VASP POSCAR/CONTCAR (``POSCAR*``, ``CONTCAR*``, ``.vasp``, ``.poscar``) and SHELX
``.res``. Each frame is a whole periodic cell in P1; the space group is not needed:
:func:`~kflow_mol.data.crystals.perceive_molecules` finds the symmetry-independent molecules
with spglib.

A frame is named by its ``NAME`` (or ``name``, ``refcode``, ``csd_code``) info key, a
database row by the same keys or ``row<id>``, and a single-structure file without such a
key by its file name without suffix. Bad input becomes one rejection each and is counted:
a file that cannot be read (a corrupt database included) is one ``unparsable`` entry, a
frame without a unit cell or without periodic boundaries is ``not_periodic``, a frame of a
multi-frame file without a name, or with a name seen before, is ``bad_name``.

Each file is read in a forked worker under the time limit (:mod:`kflow_mol.data.isolation`),
like every entry's processing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kflow_mol.data.crystals import Crystal, CrystalRejected, crystal_from_ase
from kflow_mol.data.isolation import run_guarded
from kflow_mol.data.sources import Skipped, SourceEntry

ASE_SUFFIXES: dict[str, str] = {
    ".xyz": "extxyz",
    ".extxyz": "extxyz",
    ".db": "db",
    ".cif": "cif",
    ".vasp": "vasp",
    ".poscar": "vasp",
    ".res": "res",
}
NAME_KEYS = ("NAME", "name", "refcode", "csd_code")
SIMPLE_TYPES = (str, int, float, bool)


def ase_format(path: Path) -> str | None:
    """The ASE format name of a file (by its name), or None when it is not a structure file."""
    path = Path(path)
    if path.name.upper().startswith(("POSCAR", "CONTCAR")):
        return "vasp"
    return ASE_SUFFIXES.get(path.suffix.lower())


def ase_files(path: Path) -> tuple[list[Path], list[Skipped]]:
    """The structure files of a file or folder (sorted) and everything else of the folder.

    Raises:
        FileNotFoundError: when ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        if ase_format(path) is None:
            return [], [Skipped(path.name, "not an ASE structure file")]
        return [path], []
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: ASE input (file or folder) not found")
    files, skipped = [], []
    for item in sorted(path.iterdir()):
        if item.is_file() and ase_format(item) is not None:
            files.append(item)
        else:
            skipped.append(Skipped(item.name, "not an ASE structure file" if item.is_file() else "not a file"))
    return files, skipped


@dataclass
class Frame:
    """One structure of a file.

    Attributes:
        label: where it is, e.g. ``"a.xyz frame 3"`` or ``"b.db row 5"``.
        name: its own name (info key or database key), None when it has none.
        atoms: the ASE ``Atoms``.
        meta: simple-typed info / key-value pairs (SMILES, space group, ...).
        error: why the row could not be turned into atoms, else None.
    """

    label: str
    name: str | None
    atoms: object = None
    meta: dict = field(default_factory=dict)
    error: str | None = None


def _simple(items: dict) -> dict:
    return {str(k): v.item() if isinstance(v, np.generic) else v for k, v in items.items() if _is_simple(v)}


def _is_simple(value) -> bool:
    return isinstance(value, SIMPLE_TYPES) or (isinstance(value, np.generic) and np.ndim(value) == 0)


def _own_name(info: dict) -> str | None:
    for key in NAME_KEYS:
        value = info.get(key)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _db_frames(path: Path) -> list[Frame]:
    from ase.db import connect

    frames = []
    try:
        rows = list(connect(str(path), type="db").select())
    except Exception as error:  # noqa: BLE001 - a corrupt database is one rejection
        raise CrystalRejected("unparsable", f"{path.name}: not a readable ASE database ({_first(error)})") from None
    for row in rows:
        meta = _simple(dict(row.key_value_pairs))
        name = _own_name(meta) or f"row{row.id}"
        try:
            frames.append(Frame(f"{path.name} row {row.id}", name, row.toatoms(), meta))
        except Exception as error:  # noqa: BLE001
            frames.append(Frame(f"{path.name} row {row.id}", name, None, meta, _first(error)))
    return frames


def _first(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def read_frames(path: Path) -> list[Frame]:
    """Every structure of one file.

    Raises:
        CrystalRejected: ``unparsable`` when the file cannot be read or holds no structure.
    """
    import warnings

    import ase.io

    path = Path(path)
    fmt = ase_format(path)
    if fmt == "db":
        frames = _db_frames(path)
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                images = ase.io.read(str(path), index=":", format=fmt)
        except Exception as error:  # noqa: BLE001 - any reader failure is a rejection
            raise CrystalRejected("unparsable", f"{path.name}: {_first(error)}") from None
        images = images if isinstance(images, list) else [images]
        frames = [Frame(f"{path.name} frame {i}", _own_name(a.info), a, _simple(a.info)) for i, a in enumerate(images)]
        if len(frames) == 1 and frames[0].name is None:
            frames[0].name = path.stem  # a single-structure file is named by its file
    if not frames:
        raise CrystalRejected("unparsable", f"{path.name}: no structure in the file")
    return frames


def frame_crystal(frame: Frame, crystal_id: str, source_tag: str) -> Crystal:
    """The crystal of a frame.

    The atoms are listed element by element (ascending atomic number, file order within an
    element), as pymatgen writes a P1 CIF: RDKit's bond-order assignment
    (:func:`~kflow_mol.data.crystals.check_with_rdkit`) depends on the atom order for some
    nitro and N-oxide groups, and this order keeps 9 CSD-500 frames that the file order loses.

    Raises:
        CrystalRejected: ``unparsable`` (row without atoms), ``not_periodic`` (no unit cell, or
        not periodic along all three axes).
    """
    if frame.error is not None or frame.atoms is None:
        raise CrystalRejected("unparsable", f"{frame.label}: {frame.error}")
    atoms = frame.atoms
    if atoms.cell.rank < 3:
        raise CrystalRejected("not_periodic", f"{frame.label}: no unit cell (cell rank {atoms.cell.rank} < 3)")
    if not np.all(atoms.pbc):
        pbc = "".join("T" if p else "F" for p in atoms.pbc)
        raise CrystalRejected("not_periodic", f"{frame.label}: not periodic along every axis (pbc {pbc})")
    order = np.argsort(atoms.numbers, kind="stable")  # element by element, as a P1 CIF lists them (see below)
    return crystal_from_ase(atoms[order], crystal_id, source_tag, {**frame.meta, "file_frame": frame.label})


def _rejected_entry(entry_id: str, reason: str, detail: str, meta: dict) -> SourceEntry:
    def load() -> Crystal:
        raise CrystalRejected(reason, detail)

    return SourceEntry(entry_id, load, meta)


def _file_frames(files: list[Path], time_limit: float | None, max_file_mb: float | None):
    """Read every file (each in a guarded worker): yields ``(path, frames or None, reason, detail)``."""

    def task(index: int) -> list[Frame]:
        path = files[index]
        size = path.stat().st_size
        if max_file_mb and size > max_file_mb * 1e6:
            raise CrystalRejected("too_large", f"{path.name}: {size / 1e6:.1f} MB > {max_file_mb} MB")
        return read_frames(path)

    outcomes = {o.index: o for o in run_guarded(task, len(files), time_limit, 1, (CrystalRejected,))}
    for index, path in enumerate(files):
        outcome = outcomes[index]
        yield path, outcome.value, outcome.reason, outcome.detail


def ase_entries(
    path: str | Path,
    source_tag: str,
    id_prefix: str = "",
    time_limit: float | None = None,
    max_file_mb: float | None = None,
) -> tuple[list[SourceEntry], list[Skipped]]:
    """One entry per frame or row of every structure file of ``path`` (a file or a folder).

    Args:
        path: a structure file, or a folder of them (other files are skipped).
        source_tag: the ``source`` stored with the crystals.
        id_prefix: put before every crystal id (e.g. ``"csd500."``).
        time_limit: seconds to read one file (in a forked worker); None: in this process.
        max_file_mb: larger files are one ``too_large`` entry, unread.

    Returns:
        ``(entries, skipped files)``; a file that cannot be read is one rejected entry, a
        nameless or repeated frame name one ``bad_name`` entry each.
    """
    files, skipped = ase_files(Path(path))
    entries: list[SourceEntry] = []
    seen: dict[str, str] = {}
    for file, frames, reason, detail in _file_frames(files, time_limit, max_file_mb):
        base = {"file": file.name, "source_tag": source_tag}
        if frames is None:
            entries.append(_rejected_entry(f"{id_prefix}{file.name}", reason, detail, base))
            continue
        for index, frame in enumerate(frames):
            entries.append(_frame_entry(frame, index, file, id_prefix, source_tag, seen, base, len(frames)))
    return entries, skipped


def _frame_entry(
    frame: Frame, index: int, file: Path, prefix: str, tag: str, seen: dict[str, str], base: dict, count: int
) -> SourceEntry:
    meta = {**base, "frame": index, "refcode": frame.name}
    if frame.name is None:
        detail = f"{frame.label}: no name (info key {'/'.join(NAME_KEYS)}) in a file of {count} frames"
        return _rejected_entry(f"{prefix}{file.name}#{index}", "bad_name", detail, meta)
    crystal_id = f"{prefix}{frame.name}"
    if crystal_id in seen:
        detail = f"{frame.label}: name {frame.name!r} already used by {seen[crystal_id]}"
        return _rejected_entry(f"{crystal_id}#{file.name}#{index}", "bad_name", detail, meta)
    seen[crystal_id] = frame.label
    return SourceEntry(crystal_id, lambda: frame_crystal(frame, crystal_id, tag), meta)
