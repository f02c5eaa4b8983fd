"""Running the repository's scripts from tests: one interpreter per run, one thread each.

Importable from every test folder (``tests/conftest.py`` puts ``tests/`` on ``sys.path``).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_IMAGE_RUN = [
    "data=digits",
    "transform=wavelet",
    "train.batch_size=16",
    "train.progress=false",
    "model.hidden=32",
    "model.depth=1",
    "model.heads=2",
    "eval.classifier_epochs=1",
]
"""Overrides of a seconds-long ``train_image.py`` run (3-band wavelet DiT on digits)."""


def run_script(
    script: str, *overrides: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` with Hydra ``overrides`` from ``cwd`` (default: the repository root); output is captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *overrides],
        cwd=cwd or ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def load_script(name: str):
    """``scripts/<name>.py`` as a module (scripts are not a package), to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_one_line_error(proc: subprocess.CompletedProcess, prog: str, *fragments: str) -> str:
    """``proc`` failed the scripts' way: exit 2 and one ``<prog>: error: ...`` line on stderr (returned)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
