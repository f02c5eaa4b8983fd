"""The main job end to end on a tiny budget: scripts/train_assembly.py and evaluate_assembly.py."""

import json

import pytest
from _scripts import run_script

TINY = [
    "train.steps=3",
    "train.batch_size=2",
    "train.log_every=1",
    "data.max_train=4",
    "data.max_test=2",
    "sample.steps=2",
    "sample.batch_size=2",
    "sample.export=1",
    "model.k_inter=4",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("assembly") / "run"
    proc = run_script("train_assembly.py", *TINY, f"output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_demo_config_runs_end_to_end(demo_run):
    out, proc = demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"identity", "kflow_K2"} <= set(metrics)
    for method in ("identity", "kflow_K2"):
        assert metrics[method]["pm_atom"] > 0 and metrics[method]["pm_center"] > 0
        assert metrics[method]["n_clusters"] == 2
    assert metrics["identity"]["nfe"] == 0 and metrics["kflow_K2"]["nfe"] == 2
    assert metrics["run"]["train_steps"] == 3
    for name in ("train_log.csv", "loss_curve.png", "pm_bars.png", "checkpoints/last.pt", "config.yaml"):
        assert (out / name).is_file(), name
    xyz = next((out / "trajectories").glob("*.xyz")).read_text().splitlines()
    num_atoms = int(xyz[0])
    assert len(xyz) == (num_atoms + 2) * 4  # k = 0, 1, 2 and the crystal
    cifs = sorted(p.name for p in (out / "clusters").glob("*.cif"))
    assert len(cifs) == 3 and any(name.endswith("_pred.cif") for name in cifs)
    assert "PM-atom" in proc.stdout and "identity" in proc.stdout
    rows = (out / "eval_per_cluster.csv").read_text().splitlines()
    assert rows[0].startswith("method,cluster_id,pm_atom,pm_center") and len(rows) == 1 + 2 * 2


def test_predicted_cif_reads_back_with_ase(demo_run):
    from ase.io import read

    out, _ = demo_run
    cif = next((out / "clusters").glob("*_pred.cif"))
    atoms = read(cif)
    xyz_atoms = read(next((out / "trajectories").glob("*.xyz")), index=-1)
    assert len(atoms) == len(xyz_atoms)


def test_evaluate_script_scores_the_checkpoint(demo_run):
    out, _ = demo_run
    proc = run_script(
        "evaluate_assembly.py",
        f"checkpoint={out / 'checkpoints' / 'last.pt'}",
        "eval.rmsd=false",
        f"output={out / 'eval.json'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((out / "eval.json").read_text())
    trained = json.loads((out / "metrics.json").read_text())
    assert evaluated["kflow_K2"]["pm_atom"] == pytest.approx(trained["kflow_K2"]["pm_atom"], rel=1e-4)


def test_evaluate_script_scores_the_data_named_on_the_command_line(demo_run):
    out, _ = demo_run  # trained with data.max_test=2: data=... must replace the run's data, not be ignored
    proc = run_script(
        "evaluate_assembly.py",
        f"checkpoint={out / 'checkpoints' / 'last.pt'}",
        "data=pyxtal",
        "data.max_test=1",
        "eval.rmsd=false",
        "oracles=false",
        f"output={out / 'eval_named.json'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((out / "eval_named.json").read_text())
    assert evaluated["data"]["max_test"] == 1 and evaluated["kflow_K2"]["n_clusters"] == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("K=0", "num_bands \\(K\\) must be >= 1"),
        ("K=abc", "could not be converted to Integer"),
        ("foo=1", "Key 'foo' not in 'AssemblyConfig'"),
        ("train.steps=-1", "steps"),
        ("train.out_dir=x", "use output_dir="),
        ("data=prepared", "data.folder"),
        ("flow.mode=cartesian", "num_bands must be 1"),
        ("flow.mode=cartesian K=1", "needs model.head=atom"),
        ("bump=wiggly", "unknown bump"),
        ("data=cod_organic", "needs data.input"),
        ("sample.method=leapfrog", "sample.method"),
    ],
)
def test_bad_config_is_rejected_before_work(override, message):
    from kflow.training import ConfigError
    from kflow_mol.cli import compose
    from kflow_mol.config import AssemblyConfig
    from kflow_mol.experiment import validate

    with pytest.raises(ConfigError, match=message):
        validate(compose("train_assembly", override.split(), AssemblyConfig))


def test_bad_config_exits_non_zero_with_one_line(tmp_path):
    proc = run_script("train_assembly.py", "K=0", f"output_dir={tmp_path / 'x'}", timeout=120)
    assert proc.returncode == 2
    assert "num_bands (K) must be >= 1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
