"""Table benchmark runs made as separate jobs together (``benchmark_assembly.py merge=[...]``).

Seeds or methods of one benchmark are often run as separate processes (one per core, or one
per day). Their ``benchmark.json`` records hold every per-cluster value, so tabling them
together needs no retraining, only two checks: every run scored the same test instances (same
cluster ids in the same order on each start and test set), and no (start, method, seed) comes
twice (reference rows, which every run scores once, are kept once when their values agree).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from kflow.training import ConfigError
from kflow_mol.oracles import ORACLES


def read_records(where: str | Path) -> list[dict]:
    """The records of one benchmark output folder (or its ``benchmark.json``).

    Raises:
        ConfigError: naming the file, when it cannot be read or is not a list of records.
    """
    path = Path(where) / "benchmark.json" if Path(where).is_dir() else Path(where)
    try:
        records = json.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"merge: cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"merge: {path} is not JSON ({error})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "method" in r for r in records):
        raise ConfigError(f"merge: {path} is not a benchmark.json (a list of run records)")
    return records


def merge_records(sources: Sequence[str | Path], methods: Sequence[str], oracles: bool = True) -> list[dict]:
    """The records of several benchmark runs as one benchmark's, rows in the order of ``methods``.

    Args:
        sources: benchmark output folders or ``benchmark.json`` files.
        methods: the methods to keep, in table order (``identity`` included when wanted).
        oracles: keep the oracle reference rows (after the methods).

    Returns:
        Records of the kept rows, each method's seeds in the order they were read.

    Raises:
        ConfigError: a source cannot be read, a method has no record, a (start, method, seed)
            comes twice, or two runs scored different test instances.
    """
    rows = list(methods) + (list(ORACLES) if oracles else [])
    read = [(r, str(source)) for source in sources for r in read_records(source) if r["method"] in rows]
    check_same_instances(read)
    kept: dict[tuple, tuple[dict, str]] = {}
    for record, source in read:
        key = (record["start"], record["method"], record["seed"])
        if key in kept and not same_reference_row(kept[key][0], record):
            raise ConfigError(f"merge: {key} is in both {kept[key][1]} and {source}")
        kept.setdefault(key, (record, source))
    missing = [m for m in methods if m not in {key[1] for key in kept}]
    if missing:
        raise ConfigError(f"merge: no records of {missing} in {list(map(str, sources))}")
    return sorted((record for record, _ in kept.values()), key=lambda r: rows.index(r["method"]))


def same_reference_row(kept: dict, record: dict) -> bool:
    """Whether two records are the same reference row (identity or oracle: no training, no seed
    of its own; every benchmark run scores it once), with equal per-cluster values."""
    if record["train_steps"] != 0 or kept["train_steps"] != 0 or set(kept["sets"]) != set(record["sets"]):
        return False
    return all(per_cluster(kept["sets"][name]) == per_cluster(record["sets"][name]) for name in kept["sets"])


def per_cluster(values: dict) -> dict:
    """The per-cluster lists of one test set's record (not its timings)."""
    return {key: value for key, value in values.items() if isinstance(value, list)}


def check_same_instances(read: list[tuple[dict, str]]) -> None:
    """Raise ``ConfigError`` unless every record scored the same cluster ids per (start, test set).

    Args:
        read: ``(record, source)`` pairs.
    """
    first: dict[tuple[str, str], tuple[list, tuple, str]] = {}
    for record, source in read:
        key = (record["start"], record["method"], record["seed"])
        for set_name, values in record["sets"].items():
            ids, seen, seen_in = first.setdefault((record["start"], set_name), (values["ids"], key, source))
            if values["ids"] != ids:
                raise ConfigError(
                    f"merge: {key} ({source}) scored other {set_name} instances than {seen} ({seen_in}) "
                    f"on start {record['start']}; merge only runs of the same test sets"
                )
