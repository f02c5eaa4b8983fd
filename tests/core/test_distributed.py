"""Two CPU ranks under torchrun (gloo) train like one process with the same global batch."""

import pytest
import torch
from _subprocess import max_param_difference, run_worker

from kflow.training import load_checkpoint

ARGS = ("--steps", 12, "--batch-size", 8, "--ckpt-every", 6, "--log-every", 3, "--lr", 3e-3)


@pytest.mark.slow
def test_two_ranks_match_one_process_resume_exactly_and_stop_together(tmp_path):
    single = run_worker(tmp_path / "single", *ARGS, "--paired-noise", in_process=True)
    ddp = run_worker(tmp_path / "ddp", *ARGS, "--paired-noise", "--resume-check-at", 5, "--nan-check-at", 8, nproc=2)
    assert ddp["world_size"] == 2 and ddp["step"] == single["step"] == 12
    assert [r["loss"] for r in ddp["history"]] == pytest.approx(
        [r["loss"] for r in single["history"]], rel=1e-5, abs=1e-6
    )
    assert max_param_difference(ddp["params"], single["params"]) < 1e-5
    # evaluation shards computed on each rank and gathered on rank 0 cover every item once
    assert [i for i, _ in ddp["eval"]] == list(range(32))
    assert [loss for _, loss in ddp["eval"]] == pytest.approx([loss for _, loss in single["eval"]], rel=1e-4, abs=1e-6)
    # only rank 0 writes: one log, one checkpoint, no stray temp files
    written = sorted(
        p.relative_to(tmp_path / "ddp").as_posix()
        for p in (tmp_path / "ddp").rglob("*")
        if not any(part in p.as_posix() for part in ("rng_", "nan_run"))
    )
    assert written == [
        "checkpoints",
        "checkpoints/last.pt",
        "loss_curve.png",
        "params.pt",
        "result.json",
        "train_log.csv",
    ]
    # 2-rank run stopped at step 5 (mid-epoch) and resumed with its per-rank RNG states
    check = ddp["resume_check"]
    assert check["resumed_step"] == 12
    assert check["resumed_final_loss"] == pytest.approx(check["whole_final_loss"], abs=1e-6)
    assert check["max_param_difference"] <= 1e-6
    # NaN on rank 1 only: both ranks stop at that step (no deadlock), last good state kept
    assert ddp["nan_check"]["stopped_at_per_rank"] == [8, 8]
    kept = load_checkpoint(tmp_path / "ddp" / "nan_run" / "checkpoints" / "last.pt")
    assert kept["step"] == 6 and all(torch.isfinite(t).all() for t in kept["model"].values())
