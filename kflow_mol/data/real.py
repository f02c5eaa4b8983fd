"""Every real crystal in one dataset (``source=real``): the collections of a data root, deduplicated.

Collections (in preference order: a duplicate is kept in the first collection that holds it):

==================  ===========================================  ======================
source tag          where (under the data root)                  read by
==================  ===========================================  ======================
``pyxtal_testdb``   pyxtal's ``database/test.db`` (not the root)  ASE database rows
``cod_cif``         ``cod_organic/*.cif``                         strict CIF reader
``csd500``          ``crystals/csd500/CSD-500.xyz``               ASE (extended XYZ)
``ocelot``          ``crystals/ocelot/*.cif``                     strict CIF reader
``small``           ``crystals/small/*.cif`` and ``*.db``         CIF reader and ASE db
==================  ===========================================  ======================

Crystal ids are ``<source tag>.<id in the collection>``; every cluster carries its
collection's tag as ``source``. The split is one formula-disjoint split over all kept
crystals in which test.db crystals keep their committed part (``data/splits/pyxtal_testdb.json``)
and every crystal sharing a formula with one follows it; crystals sharing a formula with one of
pyxtal's evaluation-only ``mech.db`` go to ``test``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kflow_mol.data.sources import (
    Skipped,
    SourceEntry,
    ase_db_entries,
    cif_entries,
    cif_files,
    file_sha256,
    pyxtal_database,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "data"
TESTDB_TAG = "pyxtal_testdb"
COMMITTED_SPLIT = REPO_ROOT / "data" / "splits" / "pyxtal_testdb.json"


@dataclass(frozen=True)
class Collection:
    """One collection of the real dataset.

    Attributes:
        tag: source tag stored with its clusters (and crystal-id prefix).
        path: file or folder relative to the data root (``None``: pyxtal's test.db).
        kind: ``pyxtal_db``, ``cif`` (a CIF folder; its ``.db`` files are read as ASE
            databases) or ``ase`` (a file ASE reads).
    """

    tag: str
    path: str | None
    kind: str


COLLECTIONS = (
    Collection(TESTDB_TAG, None, "pyxtal_db"),
    Collection("cod_cif", "cod_organic", "cif"),
    Collection("csd500", "crystals/csd500/CSD-500.xyz", "ase"),
    Collection("ocelot", "crystals/ocelot", "cif"),
    Collection("small", "crystals/small", "cif"),
)
REAL_TAGS = tuple(c.tag for c in COLLECTIONS)


def data_root(root: str | Path | None) -> Path:
    """The data root (``None``: ``<repo>/../shared/data``), checked to hold every collection.

    Raises:
        FileNotFoundError: one line naming the missing root or collection.
    """
    path = Path(root) if root is not None else DEFAULT_ROOT
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: data root not found (set data.root=<folder holding cod_organic/ and crystals/>)"
        )
    for collection in COLLECTIONS:
        if collection.path is not None and not (path / collection.path).exists():
            raise FileNotFoundError(f"{path / collection.path}: collection {collection.tag} missing from data root")
    return path


def collection_files(root: Path, collection: Collection) -> list[Path]:
    """Every file a collection reads (for the cache fingerprint)."""
    if collection.path is None:
        return [pyxtal_database("test.db")]
    path = root / collection.path
    return [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())


def real_fingerprint(root: str | Path | None) -> dict[str, str]:
    """SHA-256 of every file of every collection (keyed ``<tag>/<file name>``) and of the split's inputs."""
    root = data_root(root)
    hashes = {f"{c.tag}/{p.name}": file_sha256(p) for c in COLLECTIONS for p in collection_files(root, c)}
    split_inputs = {"split/pyxtal_testdb.json": COMMITTED_SPLIT, "split/mech.db": pyxtal_database("mech.db")}
    return {**hashes, **{key: file_sha256(path) for key, path in split_inputs.items()}}


def evaluation_formulas() -> set[str]:
    """Molecular formulas of pyxtal's evaluation-only ``mech.db`` (its rows' ``mol_formula``).

    ``source=real`` puts every crystal of these formulas in ``test`` (unless a test.db crystal
    pins the group elsewhere), so no model trained on it has seen a mech.db compound.
    """
    from ase.db import connect

    rows = connect(str(pyxtal_database("mech.db"))).select()
    return {str(r.key_value_pairs["mol_formula"]) for r in rows if r.key_value_pairs.get("mol_formula")}


_CSD_CODE = re.compile(r"(?m)^\s*_database_code_CSD\s+'?([A-Za-z0-9]+)'?")


def cif_refcode(path: Path) -> str | None:
    """The CSD refcode of a CIF: its ``_database_code_CSD`` or a refcode-like file name."""
    from kflow_mol.data.dedup import refcode_of

    try:
        text = path.read_bytes()[:200_000].decode("utf-8", errors="replace")
    except OSError:
        return None
    match = _CSD_CODE.search(text)
    return refcode_of(match.group(1)) if match else refcode_of(path.stem)


def _renamed(entry: SourceEntry, tag: str, refcode: str | None) -> SourceEntry:
    """The entry under the id ``<tag>.<id>``, its crystal carrying that id and the tag."""
    crystal_id = f"{tag}.{entry.entry_id}"

    def load():
        crystal = entry.load()
        crystal.crystal_id, crystal.source = crystal_id, tag
        return crystal

    meta = {**entry.meta, "source_tag": tag, "refcode": refcode}
    return SourceEntry(crystal_id, load, meta)


def collection_entries(
    root: Path, collection: Collection, time_limit: float | None, max_file_mb: float | None
) -> tuple[list[SourceEntry], list[Skipped]]:
    """The entries of one collection (ids prefixed with its tag) and the files it skips."""
    from kflow_mol.data.ase_source import ase_entries
    from kflow_mol.data.dedup import refcode_of

    tag = collection.tag
    if collection.kind == "pyxtal_db":
        entries = ase_db_entries(pyxtal_database("test.db"), tag)
        return [_renamed(e, tag, refcode_of(str(e.meta.get("csd_code")))) for e in entries], []
    path = root / collection.path
    if collection.kind == "ase":
        entries, skipped = ase_entries(path, tag, f"{tag}.", time_limit, max_file_mb)
        return [_with_refcode(e) for e in entries], _prefixed(skipped, tag)
    entries = [_renamed(e, tag, cif_refcode(Path(e.meta["path"]))) for e in cif_entries(path)]
    skipped = []
    for item in cif_files(path)[1]:
        if item.name.lower().endswith(".db"):
            more, rest = ase_entries(path / item.name, tag, f"{tag}.", time_limit, max_file_mb)
            entries += [_with_refcode(e) for e in more]
            skipped += rest
        else:
            skipped.append(item)
    return entries, _prefixed(skipped, tag)


def _with_refcode(entry: SourceEntry) -> SourceEntry:
    from kflow_mol.data.dedup import refcode_of

    entry.meta["refcode"] = refcode_of(entry.meta.get("refcode"))
    return entry


def _prefixed(skipped: list[Skipped], tag: str) -> list[Skipped]:
    return [Skipped(f"{tag}/{s.name}", s.reason) for s in skipped]


def real_entries(
    root: str | Path | None, time_limit: float | None = None, max_file_mb: float | None = None
) -> tuple[list[SourceEntry], list[Skipped]]:
    """Every entry of every collection, in preference order (:data:`COLLECTIONS`)."""
    root = data_root(root)
    entries: list[SourceEntry] = []
    skipped: list[Skipped] = []
    for collection in COLLECTIONS:
        more, rest = collection_entries(root, collection, time_limit, max_file_mb)
        entries += more
        skipped += rest
    return entries, skipped


def pinned_testdb_parts(committed: dict) -> dict[str, str]:
    """Prefixed test.db crystal id → its committed part."""
    return {f"{TESTDB_TAG}.{cid}": part for part in ("train", "val", "test") for cid in committed[part]}


def source_split_counts(clusters: list, splits: dict) -> dict[str, dict[str, dict[str, int]]]:
    """Crystals and clusters per source tag and split part.

    Args:
        clusters: the ``AssemblyData`` records of a build (``crystal_id``, ``source``).
        splits: the build's splits (``train``/``val``/``test`` id lists).

    Returns:
        ``{source: {part: {"crystals": n, "clusters": m}}}``; ``part`` also ``none`` for
        crystals in no list.
    """
    part_of = {cid: part for part in ("train", "val", "test") for cid in splits.get(part, [])}
    counts: dict[str, dict[str, dict[str, int]]] = {}
    seen: set[str] = set()
    for cluster in clusters:
        part = part_of.get(cluster.crystal_id, "none")
        cell = counts.setdefault(cluster.source, {}).setdefault(part, {"crystals": 0, "clusters": 0})
        cell["clusters"] += 1
        if cluster.crystal_id not in seen:
            seen.add(cluster.crystal_id)
            cell["crystals"] += 1
    return counts
