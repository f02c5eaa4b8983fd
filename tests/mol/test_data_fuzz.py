"""Property test: the real build on folders mixing good CIFs with corrupted copies of them.

Whatever the corruption (truncation, random bytes, swapped or removed loop columns, NaN/?/.
values, unknown symbols, duplicated data blocks, huge or zero-volume cells, non-UTF-8 bytes),
no exception escapes, every file is accounted for exactly once, the good files come out with
bit-identical clusters, and no entry runs past the time limit.
"""

import json
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.dataset import load_clusters

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
GOOD_NAMES = ("2300214", "2000334")  # ibuprofen (type symbols, 4 loops); C28H24 (labels only, one loop)
TIME_LIMIT = 20.0  # s per entry; far above any corrupted copy of these small files
NON_ELEMENTS = ("Xx", "Qq", "M1", "EI", "Zz9", "?", ".", "D5")


def _loop_header_lines(lines: list[str]) -> list[int]:
    return [k for k, line in enumerate(lines) if line.startswith("_atom_site_")]


def _atom_rows(lines: list[str]) -> list[int]:
    headers = _loop_header_lines(lines)
    rows = []
    for k in range(headers[-1] + 1, len(lines)):
        if not lines[k].strip() or lines[k].lstrip().startswith(("_", "loop_", "#")):
            break
        rows.append(k)
    return rows


def corrupt(text: bytes, kind: str, draw) -> bytes:
    """One corrupted copy of a good CIF; ``draw`` supplies the random choices."""
    if kind == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))]
    if kind == "random_bytes":
        return draw(st.binary(min_size=0, max_size=400))
    if kind == "splice_bytes":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=20)) + text[at:]
    if kind == "non_utf8":
        at = draw(st.integers(0, len(text)))
        return text[:at] + bytes([draw(st.integers(0x80, 0xFF))]) + text[at:]
    if kind == "duplicate_block":
        return text + b"\n" + text.replace(b"data_", b"data_copy_", 1)
    lines = text.decode().splitlines()
    if kind == "swap_columns":
        headers = _loop_header_lines(lines)
        a, b = draw(st.sampled_from(headers)), draw(st.sampled_from(headers))
        lines[a], lines[b] = lines[b], lines[a]
    elif kind == "remove_column":
        del lines[draw(st.sampled_from(_loop_header_lines(lines)))]
    elif kind == "bad_value":
        row = draw(st.sampled_from(_atom_rows(lines)))
        tokens = lines[row].split()
        tokens[draw(st.integers(min(1, len(tokens) - 1), len(tokens) - 1))] = draw(st.sampled_from(["NaN", "?", ".", "inf", "-1e300"]))
        lines[row] = " ".join(tokens)
    elif kind == "unknown_symbol":
        row = draw(st.sampled_from(_atom_rows(lines)))
        tokens = lines[row].split()
        tokens[0] = draw(st.sampled_from(NON_ELEMENTS))
        lines[row] = " ".join(tokens)
    elif kind in ("huge_cell", "zero_cell"):
        key = draw(st.sampled_from(["_cell_length_a", "_cell_length_b", "_cell_length_c", "_cell_angle_beta"]))
        value = draw(st.sampled_from(["1e6", "1e12"] if kind == "huge_cell" else ["0", "0.0", "180", "1e-9"]))
        lines = [re.sub(r"^(\S+)\s+.*$", rf"\1 {value}", line) if line.lower().split()[:1] == [key.lower()]
                 else line for line in lines]
    return ("\n".join(lines) + "\n").encode()


KINDS = ("truncate", "random_bytes", "splice_bytes", "non_utf8", "duplicate_block", "swap_columns",
         "remove_column", "bad_value", "unknown_symbol", "huge_cell", "zero_cell")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Each good file built alone: crystal id -> its clusters."""
    out = tmp_path_factory.mktemp("fuzz_reference")
    report = build_assembly_dataset("cif", input=GOOD, output=out, progress=False)
    assert report.kept_crystals == len(GOOD_NAMES)
    clusters = load_clusters(out / "clusters.pt")
    return {name: [c for c in clusters if c.crystal_id == name] for name in GOOD_NAMES}


def _identical(ours, theirs) -> bool:
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs):
        for key in a.keys():  # noqa: SIM118 - iterating a PyG Data yields (key, value) pairs
            same = torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key]
            if not same:
                return False
    return True


@settings(max_examples=8, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_input_stops_or_changes_a_batch(reference, data):
    good_name = data.draw(st.sampled_from(GOOD_NAMES))
    kinds = data.draw(st.lists(st.sampled_from(KINDS), min_size=2, max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        folder, output = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        (folder / f"{good_name}.cif").write_bytes((GOOD / f"{good_name}.cif").read_bytes())
        corrupted = []
        for k, kind in enumerate(kinds):
            source = (GOOD / f"{data.draw(st.sampled_from(GOOD_NAMES))}.cif").read_bytes()
            name = f"bad{k}_{kind}" + data.draw(st.sampled_from([".cif", ".CIF", ".Cif"]))
            (folder / name).write_bytes(corrupt(source, kind, data.draw))
            corrupted.append(Path(name).stem)
        (folder / "notes.txt").write_text("not a crystal\n")

        report = build_assembly_dataset("cif", input=folder, output=output, progress=False, time_limit=TIME_LIMIT)

        kept = set(json.loads((output / "manifest.json").read_text())["crystals"])
        rejected = [r.entry_id for r in report.rejected]
        assert len(rejected) == len(set(rejected)) and not kept & set(rejected)
        assert kept | set(rejected) == {good_name, *corrupted}
        assert [s.name for s in report.skipped] == ["notes.txt"]
        assert report.accounting() == f"{len(kept)} kept + {len(rejected)} rejected + 1 skipped = {len(kinds) + 2} inputs"
        assert all(r.reason != "error" for r in report.rejected), report.rejected
        clusters = load_clusters(output / "clusters.pt")
        assert _identical([c for c in clusters if c.crystal_id == good_name], reference[good_name])
        assert all(torch.isfinite(c.pos_target).all() and torch.isfinite(c.pos_start).all() for c in clusters)
        assert max(seconds for _, seconds in report.slowest) < TIME_LIMIT + 5
        timeouts = {r.entry_id for r in report.rejected if r.reason == "timeout"}
        assert timeouts <= set(corrupted)
