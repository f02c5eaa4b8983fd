"""Resumable preparation: per-entry results written to disk in atomic parts, merged in input order.

While a build runs, finished entries are collected and every :data:`PART_ENTRIES` of them
(and whatever is pending when the build stops, Ctrl-C included) are written as one *part*
under ``<output>/.parts/``: ``part_000007.safetensors`` (their clusters, see
:mod:`kflow_mol.data.store`) then ``part_000007.json`` (what happened to each entry: kept with
its cluster count, crystal id, formula, source and reduced cell, or rejected with the reason,
detail and traceback). Each file is written to a temporary name and renamed, and the JSON file
comes last, so a part either exists whole or not at all: a preparation killed at any moment
loses at most the entries not yet written, and a rerun redoes only those.

The final container is a merge of every part in *input* order (entry index), so it does not
depend on the number of workers, on completion order or on where a run was interrupted.
``<output>/.parts/key.json`` names the settings hash and the entry list the parts belong to;
parts of other settings or another input are discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kflow_mol.data.store import ClusterStore, write_store

PART_DIR = ".parts"
PART_ENTRIES = 256  # entries per part: a kill loses at most this many entries' work


@dataclass
class Kept:
    """A kept entry: how many clusters it gave and what the merge needs to know about them."""

    count: int
    crystal_id: str
    formula: str
    source: str
    cell: list[float] | None = None


@dataclass
class Done:
    """The recorded outcome of one entry (``kept`` or ``reason`` is set)."""

    index: int
    seconds: float
    kept: Kept | None = None
    reason: str | None = None
    detail: str = ""
    traceback: str | None = None


def _json_write(path: Path, value) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


class Parts:
    """The parts folder of one build: load what is done, add results, merge in input order.

    Args:
        folder: ``<output>/.parts``.
        key: identifies the build (settings hash + entry ids); parts of another key are removed.
        fresh: remove every existing part (a forced rebuild redoes every entry).
    """

    def __init__(self, folder: Path, key: str | None = None, fresh: bool = False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        key_path = self.folder / "key.json"
        if key is not None:
            old = json.loads(key_path.read_text()).get("key") if key_path.exists() else None
            if old != key or fresh:
                for path in self.folder.glob("part_*"):
                    path.unlink()
                _json_write(key_path, {"key": key})
        self.rows: dict[int, tuple[int, int]] = {}  # entry index -> (part number, first row)
        self.pending: list[tuple[Done, dict | None]] = []
        self.next_part = 0
        self._stores: dict[int, ClusterStore] = {}

    def load(self) -> list[Done]:
        """Every entry outcome already written (the parts of an earlier, interrupted run)."""
        done = []
        for path in sorted(self.folder.glob("part_*.json")):
            number = int(path.stem.split("_")[1])
            self.next_part = max(self.next_part, number + 1)
            for record in json.loads(path.read_text())["entries"]:
                kept, row = record.pop("kept", None), record.pop("row", None)
                entry = Done(**record, kept=Kept(**kept) if kept else None)
                if entry.kept is not None:
                    self.rows[entry.index] = (number, row)
                done.append(entry)
        return done

    def add(self, done: Done, block: dict | None) -> None:
        """Record one entry; every :data:`PART_ENTRIES` entries are written as a part."""
        self.pending.append((done, block))
        if len(self.pending) >= PART_ENTRIES:
            self.flush()

    def flush(self) -> None:
        """Write the pending entries as one part (clusters first, then the JSON that marks it done)."""
        if not self.pending:
            return
        pending, self.pending = sorted(self.pending, key=lambda p: p[0].index), []
        number, self.next_part = self.next_part, self.next_part + 1
        kept = [(done, block) for done, block in pending if done.kept is not None]
        write_store(self.folder / f"part_{number:06d}.safetensors", [(block, None) for _, block in kept])
        row, records = 0, []
        for done, _ in pending:
            record = asdict(done)
            if done.kept is not None:
                self.rows[done.index] = (number, row)
                record["row"] = row
                row += done.kept.count
            records.append(record)
        _json_write(self.folder / f"part_{number:06d}.json", {"entries": records})

    def merge(self, path: Path, kept: dict[int, Kept]) -> int:
        """Write the clusters of the ``kept`` entries, in entry order, to one container.

        Returns:
            The number of clusters written.
        """
        parts: list[tuple[dict, list[int]]] = []
        for index in sorted(kept):
            number, row = self.rows[index]
            rows = list(range(row, row + kept[index].count))
            if parts and parts[-1][0] is self._store(number).arrays:
                parts[-1][1].extend(rows)
            else:
                parts.append((self._store(number).arrays, rows))
        return write_store(path, parts)

    def _store(self, number: int) -> ClusterStore:
        if number not in self._stores:
            self._stores[number] = ClusterStore(self.folder / f"part_{number:06d}.safetensors")
        return self._stores[number]

    def remove(self) -> None:
        """Delete the parts folder (after a complete build: the container holds everything)."""
        self._stores.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def parts_key(digest: str, entry_ids: Sequence[str]) -> str:
    """The key of a build's parts: its settings hash and the hash of its entry list."""
    return f"{digest}-{hashlib.sha256(chr(0).join(entry_ids).encode()).hexdigest()[:16]}"
