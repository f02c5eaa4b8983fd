"""scripts/prepare_assembly_data.py: end to end on the hand-made broken files; setting checks."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_assembly_data.py"


def test_cli_writes_reasons_for_broken_files(data_broken_folder, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "source=cif", f"input={data_broken_folder}", f"output={tmp_path}", "progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "unparsable" in result.stdout and "kept 0 crystals" in result.stdout
    assert (tmp_path / "rejection_summary.txt").exists() and (tmp_path / "prepare_config.yaml").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["reason_counts"]["unparsable"] == 3


@pytest.mark.parametrize("override, message", [
    ({"source": "cif", "input": "/nonexistent"}, "needs input=<existing folder>"),
    ({"source": "zinc"}, "source must be one of"),
    ({"start": "far"}, "start must be one of"),
    ({"criterion": "nearest"}, "criterion must be one of"),
    ({"fractions": [0.9, 0.1]}, "fractions must be three"),
])
def test_bad_settings_fail_before_work(override, message):
    spec = importlib.util.spec_from_file_location("prepare_assembly_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = OmegaConf.load(ROOT / "configs" / "prepare" / "prepare_assembly_data.yaml")
    cfg.pop("hydra")
    module.validate(cfg)  # the shipped defaults are valid
    with pytest.raises(ValueError, match=message):
        module.validate(OmegaConf.merge(cfg, override))
