"""Run the training worker as a separate process (plain python or torchrun)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_train_worker.py")


def worker_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def worker_command(out_dir, *args, nproc: int = 1) -> list[str]:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return launcher + [str(WORKER), "--out", str(out_dir), *map(str, args)]


def run_worker(out_dir, *args, nproc: int = 1, timeout: float = 180, in_process: bool = False) -> dict:
    """Train to completion; returns result.json plus the trained parameters under "params".

    `in_process` runs the worker's main() in this interpreter (saves a torch import).
    """
    if in_process:
        from _train_worker import main

        threads = torch.get_num_threads()
        try:
            main(["--out", str(out_dir), *map(str, args)])
        finally:
            torch.set_num_threads(threads)
    else:
        done = subprocess.run(
            worker_command(out_dir, *args, nproc=nproc),
            cwd=REPO,
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run_worker_result(out_dir)


def run_worker_result(out_dir) -> dict:
    """result.json of a finished worker run, with its parameters under "params"."""
    result = json.loads(Path(out_dir, "result.json").read_text())
    result["params"] = torch.load(Path(out_dir, "params.pt"), weights_only=True)
    return result


def max_param_difference(a: dict, b: dict) -> float:
    return max((a[key] - b[key]).abs().max().item() for key in a)
