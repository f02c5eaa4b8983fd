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


def test_bf16_peaks_by_card_name():
    check = load_check()
    assert check.bf16_peak_tflops("NVIDIA H200") == 989.0
    assert check.bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0  # the SXM card
    assert check.bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert check.bf16_peak_tflops("NVIDIA GeForce RTX 4090") is None


def test_loss_curve_statistics_and_the_cpu_reference():
    check = load_check()
    stats = check.curve_statistics([4.0, 2.0, 3.0, 1.0, 9.0], window=2)
    assert stats["window_means"] == [3.0, 2.0] and stats["first"] == 4.0 and stats["last"] == 9.0
    reference = json.loads(check.REFERENCE.read_text())
    assert reference["steps"] == len(reference["losses"]) >= 2 * reference["statistics"]["window"]
    assert reference["statistics"] == check.curve_statistics(reference["losses"], reference["statistics"]["window"])
