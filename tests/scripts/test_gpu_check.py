"""scripts/gpu_check.sh on a machine without CUDA: the CUDA parts are skipped with a clear message."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def load_check():
    return load_script("gpu_check")


@pytest.mark.slow  # a subprocess importing torch: ~10 s on an idle machine
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU behaviour")
def test_without_cuda_the_script_skips_the_cuda_parts_and_writes_one_json(tmp_path):
    output = tmp_path / "check.json"
    env = dict(os.environ, KFLOW_GPU_CHECK_INSTALL="0", KFLOW_WHEELS=str(tmp_path / "none"))
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(output)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CUDA is not available" in done.stdout and "skipped" in done.stdout
    report = json.loads(output.read_text())
    assert report["cuda"] is False and report["failed_parts"] == []
    assert report["parts"]["environment"]["torch"] == torch.__version__
    for part in ("tests", "assembly_steps", "dit_steps", "assembly_training"):
        assert report["parts"][part]["status"] == "skipped"
        assert "CUDA is not available" in report["parts"][part]["reason"]


def test_the_cpu_reference_holds_its_own_statistics():
    from kflow.benchmarking import curve_statistics

    check = load_check()
    reference = json.loads(check.REFERENCE.read_text())
    assert reference["steps"] == len(reference["losses"]) >= 2 * reference["statistics"]["window"]
    assert reference["statistics"] == curve_statistics(reference["losses"], reference["statistics"]["window"])


def test_the_first_training_steps_repeat_the_cpu_reference():
    """The workload the check trains (kflow_mol.gpu_workloads) is the one the reference recorded."""
    from kflow_mol.gpu_workloads import train_curve

    check = load_check()
    reference = json.loads(check.REFERENCE.read_text())
    run = train_curve(torch.device("cpu"), steps=3, seconds=None, seed=reference["seed"])
    assert run["losses"] == pytest.approx(reference["losses"][:3], rel=1e-5)
