"""scripts/prepare_assembly_data.py and its run logic (kflow_mol.data.prepare): accounting, refusals, settings."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kflow_mol.data.prepare import run_prepare, validate_prepare_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_assembly_data.py"


def _defaults() -> dict:
    cfg = OmegaConf.load(ROOT / "configs" / "prepare" / "prepare_assembly_data.yaml")
    cfg.pop("hydra")
    cfg.pop("defaults")
    return OmegaConf.to_container(cfg)


def _script(*overrides, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *overrides, "progress=false"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cli_writes_reasons_and_the_accounting_equation(data_broken_folder, tmp_path):
    result = _script("source=cif", f"input={data_broken_folder}", f"output={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "unparsable" in result.stdout and "kept 0 crystals" in result.stdout
    assert "0 kept + 6 rejected + 0 skipped = 6 inputs" in result.stdout
    assert (tmp_path / "rejection_summary.txt").exists() and (tmp_path / "prepare_config.yaml").exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["reason_counts"]["unparsable"] == 3 and manifest["complete"] is True


def test_empty_folder_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    empty, output, cwd = tmp_path / "empty", tmp_path / "out", tmp_path / "cwd"
    empty.mkdir()
    cwd.mkdir()
    result = _script("source=cif", f"input={empty}", f"output={output}", cwd=cwd)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no CIF file" in result.stderr
    assert not output.exists() and list(cwd.iterdir()) == []
    (empty / "notes.txt").write_text("not a crystal\n")
    err = io.StringIO()
    assert run_prepare({**_defaults(), "source": "cif", "input": str(empty), "output": str(output)}, err=err) == 2
    assert "notes.txt" in err.getvalue() and not output.exists()


def test_upper_case_suffixes_and_other_files(data_cod_folder, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_cod_folder / "2000334.cif", folder / "a.CIF")
    shutil.copy(data_cod_folder / "2300214.cif", folder / "b.cif")
    (folder / "README.md").write_text("about the files\n")
    out = io.StringIO()
    cfg = {**_defaults(), "source": "cif", "input": str(folder), "output": str(tmp_path / "out"), "progress": False}
    assert run_prepare(cfg, out=out) == 0
    assert "2 kept + 0 rejected + 1 skipped = 3 inputs" in out.getvalue()
    assert "skipped: not a CIF: README.md" in out.getvalue()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert sorted(manifest["crystals"]) == ["a", "b"]


def test_split_all_puts_every_crystal_in_test(data_cod_folder, tmp_path):
    from kflow_mol.data import load_assembly_dataset

    cfg = {
        **_defaults(),
        "source": "cif",
        "input": str(data_cod_folder),
        "output": str(tmp_path),
        "split_mode": "all",
        "ids": ["2000334", "2300214", "7105573"],
        "progress": False,
    }
    assert run_prepare(cfg, out=io.StringIO()) == 0
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert splits["test"] == ["2000334", "2300214", "7105573"] and splits["train"] == splits["val"] == []
    assert {c.crystal_id for c in load_assembly_dataset(tmp_path, "test")} == set(splits["test"])
    # an all-test splits.json is not kept by a later build with ordinary splits
    assert run_prepare({**cfg, "split_mode": "formula"}, out=io.StringIO()) == 0
    assert json.loads((tmp_path / "splits.json").read_text())["mode"] == "formula"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"source": "cif", "input": "/nonexistent"}, "needs input=<existing folder>"),
        ({"source": "zinc"}, "source must be one of"),
        ({"start": "far"}, "start must be one of"),
        ({"criterion": "nearest"}, "criterion must be one of"),
        ({"split_mode": "half"}, "split_mode must be one of"),
        ({"fractions": [0.9, 0.1]}, "fractions must be three"),
        ({"time_limit": -1}, "time_limit must be >= 0"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"colour": "red"}, "unknown setting"),
    ],
)
def test_bad_settings_fail_before_work(override, message):
    cfg = _defaults()
    validate_prepare_config(cfg)  # the shipped defaults are valid
    with pytest.raises(ValueError, match=message):
        validate_prepare_config({**cfg, **override})
    err = io.StringIO()
    assert run_prepare({**cfg, **override}, err=err) == 2 and err.getvalue().count("\n") == 1
