"""Preparation that scales: resumable parts, workers, and a lock between concurrent builds."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kflow_mol.data import build_assembly_dataset, load_assembly_dataset
from kflow_mol.data import shards as shards_module
from kflow_mol.data.locking import folder_lock
from kflow_mol.data.shards import PART_DIR, Parts
from kflow_mol.data.store import STORE_NAME

IDS = ["ACSALA", "ZZZDKE01", "ACRDIN05"]
VOLATILE = ("seconds", "slowest", "limits")  # timings, and the workers setting


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    """A small COD-Cluster17 CSV layout (written from a pyxtal subset)."""
    out = tmp_path_factory.mktemp("csv_layout")
    build_assembly_dataset("pyxtal", output=out, repeats=3, ids=IDS, write_csv=True, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(csv_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    report = build_assembly_dataset("cod_cluster17", input=csv_folder, output=out, write_csv=False, progress=False)
    assert report.kept_clusters >= 12 and not (out / PART_DIR).exists()
    return report


def _manifest(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    return {key: value for key, value in manifest.items() if key not in VOLATILE}


def assert_same_build(folder, reference):
    assert (folder / STORE_NAME).read_bytes() == (reference.output / STORE_NAME).read_bytes()
    assert _manifest(folder) == _manifest(reference.output)
    assert (folder / "rejections.csv").read_text() == (reference.output / "rejections.csv").read_text()


def test_two_workers_give_the_same_build_as_one(csv_folder, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "PART_ENTRIES", 3)
    report = build_assembly_dataset(
        "cod_cluster17", input=csv_folder, output=tmp_path, write_csv=False, progress=False, workers=2, time_limit=30
    )
    assert report.complete and not report.cached
    assert_same_build(tmp_path, reference)


def test_an_interrupted_then_killed_build_resumes_to_the_same_result(csv_folder, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "PART_ENTRIES", 2)
    original, added = Parts.add, []

    def add_then_interrupt(self, done, block):
        original(self, done, block)
        added.append(done.index)
        if len(added) == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(Parts, "add", add_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_assembly_dataset("cod_cluster17", input=csv_folder, output=tmp_path, write_csv=False, progress=False)
    monkeypatch.setattr(Parts, "add", original)
    partial = json.loads((tmp_path / "manifest.json").read_text())
    assert partial["complete"] is False and partial["kept_clusters"] == 6  # Ctrl-C: what was recorded is written
    parts = sorted((tmp_path / PART_DIR).glob("part_*.json"))
    assert len(parts) == 4  # 3 full parts + the pending entry flushed on the interrupt
    parts[-1].unlink()  # as if killed before the last part was complete: its clusters file is an orphan
    (tmp_path / PART_DIR / ".part_000009.json.123.tmp").write_text("{half")
    report = build_assembly_dataset("cod_cluster17", input=csv_folder, output=tmp_path, write_csv=False, progress=False)
    assert report.complete and not report.cached and not (tmp_path / PART_DIR).exists()
    assert_same_build(tmp_path, reference)


def test_parts_of_other_settings_are_not_reused(csv_folder, tmp_path):
    parts = Parts(tmp_path / PART_DIR, "old-key")
    (parts.folder / "part_000000.json").write_text(json.dumps({"entries": [{"index": 0, "seconds": 0.0}]}))
    Parts(tmp_path / PART_DIR, "new-key")
    assert not list((tmp_path / PART_DIR).glob("part_*"))
    (parts.folder / "part_000000.json").write_text(json.dumps({"entries": [{"index": 0, "seconds": 0.0}]}))
    assert len(Parts(tmp_path / PART_DIR, "new-key").load()) == 1  # same key: resumed
    Parts(tmp_path / PART_DIR, "new-key", fresh=True)  # force=true: every entry redone
    assert not list((tmp_path / PART_DIR).glob("part_*"))


BUILD = textwrap.dedent(
    """
    import json, sys
    from kflow_mol.data import build_assembly_dataset
    report = build_assembly_dataset("cod_cluster17", input=sys.argv[1], output=sys.argv[2], write_csv=False,
                                    progress=True, workers=1)
    print(json.dumps({"cached": report.cached, "clusters": report.kept_clusters}))
    """
)


def test_two_concurrent_preparations_of_one_cache_give_one_valid_cache(csv_folder, reference, tmp_path):
    """Both builds start while the folder is locked; once it is free one builds, the other waits and reuses."""
    out = tmp_path / "shared_cache"
    command = [sys.executable, "-c", BUILD, str(csv_folder), str(out)]
    logs = [tmp_path / f"err{k}.txt" for k in range(2)]
    with folder_lock(out, quiet=True):
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True) for log in logs]
        deadline = time.monotonic() + 240
        while not all("waiting" in log.read_text() for log in logs) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs]
            time.sleep(0.2)
        assert all("is being prepared by pid" in log.read_text() for log in logs)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [log.read_text()[-2000:] for log in logs]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout in outputs]
    assert sorted(r["cached"] for r in reports) == [False, True]  # one built, the other waited and reused it
    assert {r["clusters"] for r in reports} == {reference.kept_clusters}
    assert_same_build(out, reference)
    assert len(load_assembly_dataset(out)) == reference.kept_clusters


def test_fast_csv_reader_gives_the_line_parser_arrays(tmp_path, monkeypatch, csv_folder):
    from kflow_mol.data import cod_cluster17 as layout
    from kflow_mol.data.crystals import CrystalRejected

    odd = tmp_path / "odd.csv"
    odd.write_text("mol_idx,atom_symbol,x,y,z\n1, C ,1.0,2.0,3.0\n0,O,1e0, 2,3\n\n1,H,0.1,0.2,0.3\n0,N,4,5,6\n")
    files = [odd, *sorted((csv_folder / layout.FINAL_DIR).iterdir())[:3]]
    fast = [layout.read_cluster_csv(path) for path in files]
    monkeypatch.setattr(layout, "_read_fast", lambda text: None)
    for path, (numbers, positions) in zip(files, fast):
        slow_numbers, slow_positions = layout.read_cluster_csv(path)
        assert numbers.dtype == slow_numbers.dtype and (numbers == slow_numbers).all()
        assert positions.dtype == slow_positions.dtype and np.array_equal(positions, slow_positions)
    monkeypatch.undo()
    odd.write_text("mol_idx,atom_symbol,x,y,z\n0,C,1,2,nan\n")
    with pytest.raises(CrystalRejected, match="line 2: non-finite"):
        layout.read_cluster_csv(odd)
