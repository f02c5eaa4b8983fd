"""Where crystals come from: CIF folders and the ASE databases shipped with pyxtal.

A source lists :class:`SourceEntry` items; each loads one :class:`Crystal` lazily (or
raises :class:`CrystalRejected`), so one bad entry never stops a batch.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kflow_mol.data.crystals import Crystal, CrystalRejected, crystal_from_ase, read_cif

# CLI name → value of the ``source`` field stored with every cluster.
SOURCE_TAGS: dict[str, str] = {
    "cif": "cod_cif",
    "pyxtal": "pyxtal_testdb",
    "pyxtal_mech": "pyxtal_mech",
    "pyxtal_random": "pyxtal_random",
    "cod_cluster17": "cod_cluster17",
    "ase": "ase",
    "real": "real",  # the dataset; its clusters carry their collection's tag (kflow_mol.data.real)
}
# Sources reserved for independent evaluation: only their "test" split can be loaded.
EVALUATION_ONLY = frozenset({"pyxtal_mech"})
SYNTHETIC = frozenset({"pyxtal_random"})


@dataclass
class SourceEntry:
    """One crystal of a source, loaded on demand.

    Attributes:
        entry_id: the crystal id.
        load: returns the crystal or raises :class:`CrystalRejected`.
        meta: what is known without loading (formula, SMILES, ...).
    """

    entry_id: str
    load: Callable[[], Crystal]
    meta: dict = field(default_factory=dict)


def canonical_source(source: str) -> str:
    """CLI name of a source given its CLI name or its stored tag."""
    for name, tag in SOURCE_TAGS.items():
        if source in (name, tag):
            return name
    raise ValueError(f"unknown source {source!r}; choose from {sorted(SOURCE_TAGS)}")


def pyxtal_database(name: str) -> Path:
    """Path of a database shipped with pyxtal (``"test.db"`` or ``"mech.db"``)."""
    import pyxtal

    path = Path(pyxtal.__file__).parent / "database" / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: pyxtal database missing (reinstall pyxtal)")
    return path


def default_input(source: str) -> Path | None:
    """The input a source uses when none is given (the pyxtal databases)."""
    name = canonical_source(source)
    if name == "pyxtal":
        return pyxtal_database("test.db")
    if name == "pyxtal_mech":
        return pyxtal_database("mech.db")
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


CIF_SUFFIXES = (".cif", ".mmcif")  # matched case-insensitively


@dataclass
class Skipped:
    """A file of an input folder that is not an entry, with the reason (``not a CIF``)."""

    name: str
    reason: str


def cif_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """The CIF candidates of a folder (``*.cif``, ``*.mmcif``, any case; sorted) and everything else.

    Raises:
        FileNotFoundError: when ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: CIF input folder not found")
    candidates, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in CIF_SUFFIXES:
            candidates.append(path)
        else:
            skipped.append(Skipped(path.name, "not a CIF" if path.is_file() else "not a file"))
    return candidates, skipped


def cif_entry_ids(paths: list[Path]) -> list[str]:
    """Entry id of each file: its name without the suffix, or the full name where two files share a stem."""
    stems = Counter(p.stem for p in paths)
    return [p.stem if stems[p.stem] == 1 else p.name for p in paths]


def cif_entries(folder: Path) -> list[SourceEntry]:
    """Every CIF file of a folder (see :func:`cif_files`), one crystal each."""
    paths, _ = cif_files(folder)
    return [
        SourceEntry(entry_id, lambda p=p, c=entry_id: read_cif(p, c), {"file": p.name, "path": str(p)})
        for p, entry_id in zip(paths, cif_entry_ids(paths))
    ]


def ase_db_entries(path: Path, source_tag: str) -> list[SourceEntry]:
    """Rows of an ASE database holding full cells (the pyxtal format: ``csd_code`` ids)."""
    from ase.db import connect

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: ASE database not found")
    entries, seen = [], set()
    for row in connect(str(path)).select():
        meta = dict(row.key_value_pairs)
        crystal_id = str(meta.get("csd_code", f"row{row.id}"))
        if crystal_id in seen:
            crystal_id = f"{crystal_id}_row{row.id}"
        seen.add(crystal_id)
        load = lambda r=row, c=crystal_id, m=meta: _row_crystal(r, c, source_tag, m)  # noqa: E731
        entries.append(SourceEntry(crystal_id, load, meta))
    return entries


def _row_crystal(row, crystal_id: str, source_tag: str, meta: dict) -> Crystal:
    try:
        atoms = row.toatoms()
    except Exception as error:  # noqa: BLE001
        raise CrystalRejected("unparsable", f"{crystal_id}: {error}") from None
    return crystal_from_ase(atoms, crystal_id, source_tag, meta)


def crystal_entries(source: str, input: str | Path | None = None) -> list[SourceEntry]:
    """The crystals of a crystal source (``cif``, ``pyxtal``, ``pyxtal_mech``)."""
    name = canonical_source(source)
    if name == "cif":
        if input is None:
            raise ValueError("source=cif needs input=<folder of CIF files>")
        return cif_entries(Path(input))
    if name in ("pyxtal", "pyxtal_mech"):
        return ase_db_entries(Path(input) if input else default_input(name), SOURCE_TAGS[name])
    raise ValueError(f"{source!r} is not a crystal source")


def input_fingerprint(source: str, input: str | Path | None) -> dict[str, str]:
    """SHA-256 of every input file, so a cache is rebuilt when the data change."""
    name = canonical_source(source)
    path = Path(input) if input is not None else default_input(name)
    if path is None:
        return {}
    if path.is_file():
        return {path.name: file_sha256(path)}
    if name == "cod_cluster17":
        files = sorted(path.glob("raw/*/*.csv"))
    elif name == "pyxtal_random":
        files = [p for p in (path / "manifest.json", path / "splits.json") if p.exists()]
    else:
        files = cif_files(path)[0]
    return {str(p.relative_to(path)): file_sha256(p) for p in files}
