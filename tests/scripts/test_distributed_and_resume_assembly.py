"""scripts/train_assembly.py under torchrun (2 CPU ranks) and killed with SIGKILL then resumed.

(Bad configs failing fast in one line are tested in tests/scripts/test_train_assembly.py.)

The flow's loss draws k through the Trainer's `StepDraws` (one value per cluster, the same
however the global batch is split over ranks), so a 2-rank run repeats the 1-process run's
draws and must reach the same parameters, up to the order of floating-point sums; only rank 0
may write.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from kflow.training import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_assembly.py"
STEPS = 20
TINY = [
    f"train.steps={STEPS}",
    "train.batch_size=4",
    "train.log_every=2",
    "train.ckpt_every=4",
    "train.warmup_steps=0",
    "train.lr=0.002",
    "data.max_train=8",
    "data.max_test=2",
    "sample.steps=2",
    "sample.batch_size=2",
    "sample.export=0",
    "model.k_inter=4",
    "train.progress=false",
    "eval.rmsd=false",
]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(out_dir, *overrides, nproc: int = 1) -> list[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return launcher + [str(SCRIPT), *TINY, f"output_dir={out_dir}", *overrides]


def train(out_dir, *overrides, nproc: int = 1) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(
            command(out_dir, *overrides, nproc=nproc), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired as hang:
        if nproc == 1:
            raise
        # Seen once on a loaded 2-core machine: every output written, then torchrun never
        # returned. Not reproduced since ranks meet at a barrier before the group is destroyed;
        # retried once so the report names it instead of failing the whole suite.
        warnings.warn(f"2-rank torchrun did not exit within {hang.timeout} s; retrying once", stacklevel=2)
        shutil.rmtree(out_dir, ignore_errors=True)
        Path(out_dir).mkdir(parents=True)
        done = subprocess.run(
            command(out_dir, *overrides, nproc=nproc), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def log_losses(out_dir) -> list[float]:
    with open(Path(out_dir) / "train_log.csv") as file:
        return [float(row["loss"]) for row in csv.DictReader(file)]


def final_params(out_dir) -> torch.Tensor:
    state = load_checkpoint(Path(out_dir) / "checkpoints" / "last.pt")
    assert state["step"] == STEPS
    return torch.cat([t.flatten().double() for t in state["model"].values()])


def initial_params() -> torch.Tensor:
    """The script's model before training: torch.manual_seed(train.seed) then build_model."""
    from kflow_mol.models import build_model

    torch.manual_seed(0)
    model = build_model("S", "rigid", edge_mode="knn", radius=5.0, k_inter=4)
    return torch.cat([t.flatten().double() for t in model.state_dict().values()])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("assembly_reference")
    train(out)
    return out


@pytest.mark.slow
def test_two_rank_torchrun_run_trains_like_one_process(reference, tmp_path):
    train(tmp_path, nproc=2)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == [
        "checkpoints",
        "config.yaml",
        "eval_per_cluster.csv",
        "loss_curve.png",
        "metrics.json",
        "pm_bars.png",
        "train_log.csv",
        "val_curve.png",  # the demo config validates (here only at the last step), on rank 0
        "val_log.csv",
    ]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    val_single, val_ddp = (list(csv.DictReader(open(run / "val_log.csv"))) for run in (reference, tmp_path))
    assert [row["step"] for row in val_ddp] == [row["step"] for row in val_single] == [str(STEPS)]
    assert float(val_ddp[0]["pm_atom"]) == pytest.approx(float(val_single[0]["pm_atom"]), rel=1e-3)
    single, ddp = log_losses(reference), log_losses(tmp_path)
    assert len(ddp) == len(single) == STEPS // 2
    assert ddp == pytest.approx(single, rel=1e-4, abs=1e-5), (ddp, single)
    start = initial_params()
    moved = (final_params(reference) - start).norm()
    gap = (final_params(tmp_path) - final_params(reference)).norm()
    assert gap < 1e-4 * moved, (gap, moved)


@pytest.mark.slow
def test_sigkill_then_resume_true_matches_the_unbroken_run(reference, tmp_path):
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        command(tmp_path), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists():
            assert process.poll() is None, "the run ended before a checkpoint appeared"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert 4 <= killed_at < STEPS and not (tmp_path / "metrics.json").exists()

    resumed = train(tmp_path, "resume=true")
    assert f"resumed from {checkpoint} at step {killed_at}" in resumed.stderr
    assert log_losses(tmp_path) == pytest.approx(log_losses(reference), abs=1e-6)
    torch.testing.assert_close(final_params(tmp_path), final_params(reference), atol=1e-6, rtol=0)
