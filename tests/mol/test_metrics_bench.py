import json
import sys

import torch
from _scripts import load_script


def load_bench():
    return load_script("bench_metrics")


def test_bench_clusters_are_rigid_copies(monkeypatch, tmp_path):
    bench = load_bench()
    true, pred, z, mol = bench.make_clusters(3, "c1ccccc1", 5, seed=0)
    assert true.shape == pred.shape == (3, 60, 3) and z.shape == mol.shape == (60,)
    # each predicted molecule is a rigid motion of a true one: internal distances agree
    d_true = torch.cdist(true[1, :12], true[1, :12])
    d_pred = torch.cdist(pred[1, :12], pred[1, :12])
    torch.testing.assert_close(d_true, d_pred)

    out = tmp_path / "bench.json"
    monkeypatch.setattr(
        sys,
        "argv",
        ["bench", "--clusters", "4", "--molecules", "5", "--smiles", "c1ccccc1", "--repeats", "1", "--out", str(out)],
    )
    bench.main()
    report = json.loads(out.read_text())
    assert [row["metric"] for row in report["timings"]] == ["PM-atom", "PM-center", "RMSD_17"]
    values = report["values"]
    assert all(torch.isfinite(torch.tensor(v)) for v in values.values())
    # molecules move by ~0.9 Å against a 1.8 Å tolerance (0.2 x 9 Å neighbour distance)
    assert values["n_matched_mean"] >= 4


def test_bench_times_the_reference_loop_of_the_tests(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = ["--clusters", "2", "--molecules", "5", "--smiles", "c1ccccc1", "--repeats", "1", "--reference"]
    bench.main([*argv, "--out", str(out)])
    report = json.loads(out.read_text())
    assert [row["metric"] for row in report["timings"]][-1] == "RMSD_17 per-cluster loop"
