"""Corrupted copies of CIF files: the inputs of the robustness tests and throughput measurements.

:func:`corrupt_cif` applies one named corruption (:data:`CORRUPTIONS`) to the bytes of a CIF,
with every random choice taken from a seeded generator; :func:`write_corpus` fills a folder
with good copies and corrupted copies of a folder of CIFs (``data/README.md`` measures the
preparation throughput on such a corpus).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

CORRUPTIONS = (
    "truncate",
    "random_bytes",
    "splice_bytes",
    "non_utf8",
    "duplicate_block",
    "swap_columns",
    "remove_column",
    "bad_value",
    "unknown_symbol",
    "huge_cell",
    "zero_cell",
)
BAD_VALUES = ("NaN", "?", ".", "inf", "-1e300")
NON_ELEMENTS = ("Xx", "Qq", "M1", "EI", "Zz9", "?", ".", "Q5")  # ? and . fall back to the label
CELL_KEYS = ("_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_beta")


def _atom_site_headers(lines: list[str]) -> list[int]:
    """Line numbers of the column names of the atom_site loop that holds the coordinates."""
    names = [k for k, line in enumerate(lines) if line.strip().lower().startswith("_atom_site_")]
    coordinates = [k for k in names if lines[k].strip().lower() == "_atom_site_fract_x"]
    if not coordinates:
        return []
    first = last = coordinates[0]
    while first - 1 in names:
        first -= 1
    while last + 1 in names:
        last += 1
    return list(range(first, last + 1))


def _atom_site_rows(lines: list[str]) -> list[int]:
    """Line numbers of the data rows of that loop."""
    headers = _atom_site_headers(lines)
    rows = []
    for k in range(headers[-1] + 1 if headers else len(lines), len(lines)):
        if not lines[k].strip() or lines[k].lstrip().startswith(("_", "loop_", "#")):
            break
        rows.append(k)
    return rows


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _corrupt_bytes(text: bytes, kind: str, rng: np.random.Generator) -> bytes:
    if kind == "truncate":
        return text[: int(rng.integers(len(text)))]
    if kind == "random_bytes":
        return rng.bytes(int(rng.integers(0, 400)))
    at = int(rng.integers(len(text) + 1))
    if kind == "splice_bytes":
        return text[:at] + rng.bytes(int(rng.integers(1, 21))) + text[at:]
    if kind == "non_utf8":
        return text[:at] + bytes([int(rng.integers(0x80, 0x100))]) + text[at:]
    return text + b"\n" + text.replace(b"data_", b"data_copy_", 1)  # duplicate_block


def _corrupt_lines(lines: list[str], kind: str, rng: np.random.Generator) -> list[str]:
    if kind == "swap_columns":
        headers = _atom_site_headers(lines)
        a, b = _pick(rng, headers), _pick(rng, headers)
        lines[a], lines[b] = lines[b], lines[a]
    elif kind == "remove_column":
        del lines[_pick(rng, _atom_site_headers(lines))]
    elif kind in ("bad_value", "unknown_symbol"):
        row = _pick(rng, _atom_site_rows(lines))
        tokens = lines[row].split()
        if kind == "bad_value":
            tokens[int(rng.integers(min(1, len(tokens) - 1), len(tokens)))] = _pick(rng, BAD_VALUES)
        else:  # the type symbol, or the label where there is no type-symbol column
            names = [lines[k].strip().lower() for k in _atom_site_headers(lines)]
            column = names.index("_atom_site_type_symbol") if "_atom_site_type_symbol" in names else 0
            tokens[min(column, len(tokens) - 1)] = _pick(rng, NON_ELEMENTS)
        lines[row] = " ".join(tokens)
    else:  # huge_cell, zero_cell
        key = _pick(rng, CELL_KEYS)
        value = _pick(rng, ("1e6", "1e12") if kind == "huge_cell" else ("0", "0.0", "180", "1e-9"))
        lines = [
            re.sub(r"^(\S+)\s+.*$", rf"\1 {value}", line) if line.lower().split()[:1] == [key.lower()] else line
            for line in lines
        ]
    return lines


def corrupt_cif(text: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One corrupted copy of a CIF file.

    Args:
        text: the file's bytes (a CIF with an atom_site loop, for the line-based kinds).
        kind: one of :data:`CORRUPTIONS`.
        rng: the source of every random choice.

    Returns:
        The corrupted bytes (may equal ``text``, e.g. a column swapped with itself).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind must be one of {CORRUPTIONS}, got {kind!r}")
    lines = text.decode("utf-8", errors="replace").splitlines()
    if kind in ("truncate", "random_bytes", "splice_bytes", "non_utf8", "duplicate_block"):
        return _corrupt_bytes(text, kind, rng)
    if not _atom_site_headers(lines) or not _atom_site_rows(lines):
        raise ValueError("the line-based corruptions need an atom_site loop")
    lines = _corrupt_lines(lines, kind, rng)
    return ("\n".join(lines) + "\n").encode()


def write_corpus(
    source: str | Path, output: str | Path, copies: int = 25, seed: int = 0, good_share: float = 0.4
) -> dict[str, int]:
    """Fill ``output`` with renamed copies of the CIFs of ``source``, a ``good_share`` of them intact.

    Args:
        source: folder of good ``*.cif`` files.
        output: folder to write (created).
        copies: copies of every source file.
        seed: seed of all choices.
        good_share: fraction of copies left intact; the rest get one corruption each.

    Returns:
        Files written per kind (``good`` for intact copies).
    """
    rng = np.random.default_rng(seed)
    files = sorted(Path(source).glob("*.cif"))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for path in files:
        text = path.read_bytes()
        for copy in range(copies):
            kind = "good" if rng.random() < good_share else _pick(rng, CORRUPTIONS)
            try:
                data = text if kind == "good" else corrupt_cif(text, kind, rng)
            except ValueError:  # no atom_site loop rows to corrupt line by line
                kind = "truncate"
                data = corrupt_cif(text, kind, rng)
            (output / f"{path.stem}_{copy:03d}_{kind}.cif").write_bytes(data)
            counts[kind] = counts.get(kind, 0) + 1
    return counts
