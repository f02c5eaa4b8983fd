"""scripts/assemble.py: the Hydra edge of kflow_mol.assemble (outputs, batch mode, one-line errors).

Two end-to-end runs go through the real script in a subprocess; the error cases call the same
``main`` in-process (the script is that one call), with a tiny random-weight model.
"""

import json
from pathlib import Path

import pytest
from _scripts import run_script
from _tiny_assembly import tiny_checkpoint

from kflow_mol.assemble_cli import main, quote_values

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "mol" / "fixtures" / "good"
NACL = ROOT / "tests" / "mol" / "fixtures" / "broken" / "nacl.cif"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "last.pt")


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smiles_end_to_end_writes_every_output(tiny, tmp_path):
    out = tmp_path / "aspirin"
    result = run_script("assemble.py", f"input={ASPIRIN}", f"model={tiny}", f"output={out}", "num_mols=6")
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"smiles_predicted.cif", "smiles_predicted.xyz", "smiles_predicted.pdb", "smiles_trajectory.xyz"} <= names
    assert {"report.json", "smiles.png"} <= names
    report = json.loads((out / "report.json").read_text())
    assert report["formula"] == "C9H8O4" and report["num_mols"] == 6
    assert "collisions" in result.stderr and "wrote" in result.stderr


def test_batch_mode_reports_and_counts_a_bad_file(tiny, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "ethanol.smi").write_text("CCO ethanol\n")
    (folder / "broken.smi").write_text("C1CC(\n")
    (folder / "2000334.cif").write_bytes((GOOD / "2000334.cif").read_bytes())
    (folder / "notes.txt").write_text("not an input")
    out = tmp_path / "batch"
    result = run_script(
        "assemble.py", f"input={folder}", f"model={tiny}", f"output={out}", "num_mols=17", "start=local"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "batch_report.json").read_text())
    assert summary["files"] == 3 and summary["done"] == 2 and summary["failed"] == 1
    assert summary["failures"][0]["file"] == "broken.smi" and "SMILES" in summary["failures"][0]["error"]
    assert (out / "ethanol" / "report.json").is_file()
    crystal = json.loads((out / "2000334" / "report.json").read_text())
    assert crystal["prediction"]["pm_atom"] > 0
    assert "2 done + 1 failed = 3 files" in result.stderr
    assert "broken.smi: failed" in result.stderr


def test_crystal_input_reports_pm(capsys, tiny, tmp_path):
    code, _, err = run_main(
        capsys, f"input={GOOD / '2300214.cif'}", f"model={tiny}", f"output={tmp_path}", "start=local"
    )
    assert code == 0, err
    assert "PM-atom" in err and "PM-center" in err
    assert json.loads((tmp_path / "report.json").read_text())["prediction"]["pm_center"] > 0


def test_help(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "input=" in out and "samples=" in out and "model='default'" in out


def _assert_one_line_exit_2(code: int, err: str, match: str):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("assemble: error: "), err
    assert match in lines[0], lines[0]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["input=C1CC("], "SMILES"),
        (["input=[Na+].[Cl-]"], "components"),
        ([f"input={NACL}"], "not_organic"),
        (["input=" + "C" * 40], "too_many_atoms"),
        (["input=nothing/here.cif"], "does not exist"),
        (["input=CCO", "start=sideways"], "start"),
        (["input=CCO", "colour=red"], "colour"),
        ([], "input="),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tiny, tmp_path, argv, match):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, *argv, f"model={tiny}", f"output={out}")
    _assert_one_line_exit_2(code, err, match)
    assert not out.exists()  # nothing written


def test_polymeric_structure(capsys, tiny, tmp_path):
    from test_assemble import polyethylene  # tests/mol is on sys.path when the suite runs

    code, _, err = run_main(capsys, f"input={polyethylene(tmp_path / 'pe.xyz')}", f"model={tiny}")
    _assert_one_line_exit_2(code, err, "polymeric")


def test_missing_and_foreign_checkpoints(capsys, tmp_path):
    code, _, err = run_main(capsys, "input=CCO", f"model={tmp_path / 'none.pt'}")
    _assert_one_line_exit_2(code, err, "does not exist")
    foreign = tmp_path / "image.pt"
    from kflow.training.checkpoint import FORMAT_VERSION, save_checkpoint

    save_checkpoint(foreign, {"format_version": FORMAT_VERSION, "model": {}, "run_config": {"transform": "fourier"}})
    code, _, err = run_main(capsys, "input=CCO", f"model={foreign}")
    _assert_one_line_exit_2(code, err, "not a molecular-assembly checkpoint")
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, {"format_version": FORMAT_VERSION + 1, "model": {}})
    code, _, err = run_main(capsys, "input=CCO", f"model={newer}")
    _assert_one_line_exit_2(code, err, "format_version")


def test_output_folder_that_cannot_be_written(capsys, tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, _, err = run_main(capsys, "input=CCO", f"model={tiny}", f"output={blocker / 'out'}")
    _assert_one_line_exit_2(code, err, "cannot be written")
    assert blocker.read_text() == "keep me"


def test_smiles_values_are_quoted_for_hydra():
    assert quote_values(["input=C[C@@H](N)C(=O)O", "samples=2"]) == ["input='C[C@@H](N)C(=O)O'", "samples=2"]
    assert quote_values(["input='CCO'"]) == ["input='CCO'"]
