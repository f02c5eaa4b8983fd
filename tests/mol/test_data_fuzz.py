"""Property test: the real build on folders mixing good CIFs with corrupted copies of them.

Hypothesis draws the corruptions (kflow_mol.data.corruption) and their seeds. Whatever the
corruption (truncation, random bytes, swapped or removed loop columns, NaN/?/. values, unknown
symbols, duplicated data blocks, huge or zero-volume cells, non-UTF-8 bytes), no exception
escapes, every file is accounted for exactly once, the good files come out with bit-identical
clusters, and no entry runs past the time limit.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kflow_mol.data import build_assembly_dataset
from kflow_mol.data.corruption import CORRUPTIONS, corrupt_cif
from kflow_mol.data.dataset import load_clusters

GOOD = Path(__file__).resolve().parent / "fixtures" / "good"
GOOD_NAMES = ("2300214", "2000334")  # ibuprofen (type symbols, 4 loops); C28H24 (labels only, one loop)
TIME_LIMIT = 20.0  # s per entry; far above any corrupted copy of these small files


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


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_input_stops_or_changes_a_batch(reference, data):
    good_name = data.draw(st.sampled_from(GOOD_NAMES))
    kinds = data.draw(st.lists(st.sampled_from(CORRUPTIONS), min_size=2, max_size=3))
    with tempfile.TemporaryDirectory() as tmp:
        folder, output = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        (folder / f"{good_name}.cif").write_bytes((GOOD / f"{good_name}.cif").read_bytes())
        corrupted = []
        for k, kind in enumerate(kinds):
            source = (GOOD / f"{data.draw(st.sampled_from(GOOD_NAMES))}.cif").read_bytes()
            name = f"bad{k}_{kind}" + data.draw(st.sampled_from([".cif", ".CIF", ".Cif"]))
            rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
            (folder / name).write_bytes(corrupt_cif(source, kind, rng))
            corrupted.append(Path(name).stem)
        (folder / "notes.txt").write_text("not a crystal\n")

        report = build_assembly_dataset("cif", input=folder, output=output, progress=False, time_limit=TIME_LIMIT)

        kept = set(json.loads((output / "manifest.json").read_text())["crystals"])
        rejected = [r.entry_id for r in report.rejected]
        assert len(rejected) == len(set(rejected)) and not kept & set(rejected)
        assert kept | set(rejected) == {good_name, *corrupted}
        assert [s.name for s in report.skipped] == ["notes.txt"]
        total = len(kinds) + 2
        assert report.accounting() == f"{len(kept)} kept + {len(rejected)} rejected + 1 skipped = {total} inputs"
        assert all(r.reason != "error" for r in report.rejected), report.rejected
        for r in report.rejected:
            event(f"{r.entry_id.split('_', 1)[1]} -> {r.reason}")
        clusters = load_clusters(output / "clusters.pt")
        assert _identical([c for c in clusters if c.crystal_id == good_name], reference[good_name])
        assert all(torch.isfinite(c.pos_target).all() and torch.isfinite(c.pos_start).all() for c in clusters)
        assert max(seconds for _, seconds in report.slowest) < TIME_LIMIT + 5
        timeouts = {r.entry_id for r in report.rejected if r.reason == "timeout"}
        assert timeouts <= set(corrupted)


def test_every_corruption_kind_in_one_batch(reference, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in GOOD_NAMES:
        (folder / f"{name}.cif").write_bytes((GOOD / f"{name}.cif").read_bytes())
    rng = np.random.default_rng(0)
    for kind in CORRUPTIONS:
        for name in GOOD_NAMES:
            (folder / f"{kind}_{name}.cif").write_bytes(corrupt_cif((GOOD / f"{name}.cif").read_bytes(), kind, rng))
    report = build_assembly_dataset(
        "cif", input=folder, output=tmp_path / "out", progress=False, time_limit=TIME_LIMIT, workers=2
    )  # the reference used one worker
    total = len(GOOD_NAMES) * (len(CORRUPTIONS) + 1)
    assert report.entries == total and report.kept_crystals + len(report.rejected) == total
    assert not {r.reason for r in report.rejected} & {"error", "timeout"}, report.rejected
    clusters = load_clusters(tmp_path / "out" / "clusters.pt")
    for name in GOOD_NAMES:
        assert _identical([c for c in clusters if c.crystal_id == name], reference[name])
    kept = set(json.loads((tmp_path / "out" / "manifest.json").read_text())["crystals"])
    assert set(GOOD_NAMES) <= kept
