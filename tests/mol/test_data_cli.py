"""scripts/prepare_assembly_data.py end to end on the hand-made broken files."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_assembly_data.py"


def _run(*overrides):
    return subprocess.run([sys.executable, str(SCRIPT), *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_writes_reasons_for_broken_files(data_broken_folder, tmp_path):
    result = _run("source=cif", f"input={data_broken_folder}", f"output={tmp_path}", "progress=false")
    assert result.returncode == 0, result.stderr
    assert "unparsable" in result.stdout and "kept 0 crystals" in result.stdout
    assert (tmp_path / "rejection_summary.txt").exists() and (tmp_path / "prepare_config.yaml").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["reason_counts"]["unparsable"] == 3


def test_cli_rejects_a_bad_setting_in_one_line(tmp_path):
    result = _run("source=cif", f"input={tmp_path / 'missing'}")
    assert result.returncode != 0 and "needs input=<existing folder>" in result.stderr
    result = _run("start=far")
    assert result.returncode != 0 and "start must be one of" in result.stderr
