"""scripts/train_image.py stopped part-way and continued with resume=true repeats the
unbroken run exactly (transform, data order, RNG streams and optimizer state all restored)."""

import csv
import subprocess
from pathlib import Path

import pytest
import torch
from _scripts import TINY_IMAGE_RUN, run_script

from kflow.training import load_checkpoint

TINY = [
    *TINY_IMAGE_RUN,
    "train.warmup_steps=2",
    "train.log_every=2",
    "train.ckpt_every=100",
    "sample.num_samples=20",
    "sample.total_steps=3",
    "eval.cdr=false",
    "figures=false",
]


def train_image(out_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    done = run_script(
        "train_image.py",
        *TINY,
        f"output_dir={out_dir}",
        f"hydra.run.dir={out_dir}/hydra",
        f"eval.cache_dir={out_dir.parent / 'feature_cache'}",
        *overrides,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def logged(out_dir: Path) -> list[tuple[int, float]]:
    with open(out_dir / "train_log.csv") as file:
        return [(int(float(row["step"])), float(row["loss"])) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_stopped_then_resumed_image_run_matches_the_unbroken_run(tmp_path):
    train_image(tmp_path / "whole", "train.steps=8")
    train_image(tmp_path / "split", "train.steps=4")
    train_image(tmp_path / "split", "train.steps=8", "resume=true")
    split_log, whole_log = logged(tmp_path / "split"), logged(tmp_path / "whole")
    assert [step for step, _ in split_log] == [step for step, _ in whole_log] == [2, 4, 6, 8]
    assert [loss for _, loss in split_log] == pytest.approx([loss for _, loss in whole_log], abs=1e-6)
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert whole["step"] == split["step"] == 8
    for key, value in whole["model"].items():
        torch.testing.assert_close(split["model"][key], value, atol=1e-6, rtol=0)
