"""The scripts' shared edge (kflow_edge.cli): --help shows the composed defaults, one error line, data= is used."""

import pytest
from _scripts import assert_one_line_error, run_script

from kflow.training import ConfigError


def _help(capsys, main, *args, **kwargs) -> str:
    def must_not_run(cfg):
        raise AssertionError("--help ran the script")

    main(*args, must_not_run, argv=["--help", *kwargs.pop("overrides", [])], **kwargs)
    return capsys.readouterr().out


def test_train_assembly_help_shows_the_composed_defaults(capsys):
    from kflow_mol.cli import main
    from kflow_mol.config import AssemblyConfig

    lines = set(_help(capsys, main, "train_assembly", "train_assembly", AssemblyConfig).splitlines())
    for line in ("train.steps=800", "train.batch_size=8", "train.lr=0.002", "train.warmup_steps=20"):
        assert f"  {line}" in lines, line
    assert "  train.val_every=100" in lines and "  eval.use_best=false" in lines  # the YAML file's values
    assert "  model.preset=S" in lines and "  output_dir=outputs/assembly_demo" in lines
    refused = [
        line for line in lines if line.split("=")[0].strip() in ("train.out_dir", "train.device", "train.resume")
    ]
    assert not refused, refused


def test_help_follows_the_overrides_given_with_it(capsys):
    from kflow_mol.cli import main
    from kflow_mol.config import AssemblyConfig

    out = _help(capsys, main, "train_assembly", "train_assembly", AssemblyConfig, overrides=["model=M", "K=3"])
    assert "  model.preset=M" in out.splitlines() and "  K=3" in out.splitlines()


def test_image_help_shows_the_composed_defaults(capsys):
    from kflow_image.cli import main
    from kflow_image.config import ImageRunConfig, SampleRunConfig

    lines = _help(capsys, main, "train_image", "train_image", ImageRunConfig).splitlines()
    assert "  train.steps=2000" in lines and "  output_dir=outputs/image/digits-pixel-fourier" in lines
    assert "  run_dir=???" in _help(capsys, main, "sample_image", "sample_image", SampleRunConfig).splitlines()


def test_help_through_the_script(tmp_path):
    proc = run_script("evaluate_assembly.py", "--help", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "  checkpoint=???" in proc.stdout.splitlines() and "  use_run_data=true" in proc.stdout.splitlines()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["checkpoint=c.pt"], ["checkpoint=c.pt"]),
        (
            ["checkpoint=c.pt", "data=prepared", "data.folder=x"],
            ["checkpoint=c.pt", "data=prepared", "data.folder=x", "use_run_data=false"],
        ),
        (
            ["checkpoint=c.pt", "data=pyxtal", "use_run_data=false"],
            ["checkpoint=c.pt", "data=pyxtal", "use_run_data=false"],
        ),
        (
            ["checkpoint=c.pt", "use_run_data=false", "data.repeats=4"],
            ["checkpoint=c.pt", "use_run_data=false", "data.repeats=4"],
        ),
        (["checkpoint=null", "data.max_test=3"], ["checkpoint=null", "data.max_test=3"]),
    ],
)
def test_evaluate_data_override_is_used(overrides, expected):
    from kflow_mol.cli import evaluate_overrides

    assert evaluate_overrides(overrides) == expected


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["checkpoint=c.pt", "data=pyxtal", "use_run_data=true"], "data=pyxtal and use_run_data=true"),
        (["checkpoint=c.pt", "data.max_test=3"], "data.max_test changes data that is not scored"),
    ],
)
def test_evaluate_data_override_that_would_be_ignored_is_refused(overrides, message):
    from kflow_mol.cli import evaluate_overrides

    with pytest.raises(ConfigError, match=message):
        evaluate_overrides(overrides)


def test_evaluate_refusal_through_the_script(tmp_path):
    proc = run_script("evaluate_assembly.py", "checkpoint=c.pt", "data.start=scrambled", cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "evaluate_assembly", "data.start changes data that is not scored")


def test_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(bytes(range(256)) * 4)
    proc = run_script("evaluate_assembly.py", f"checkpoint={bad}", cwd=tmp_path, timeout=120)
    line = assert_one_line_error(proc, "evaluate_assembly", f"checkpoint {bad} cannot be read")
    assert "weights_only" not in line and "trusted source" not in line


def test_prepare_refuses_an_unknown_key_in_one_line(tmp_path):
    proc = run_script("prepare_assembly_data.py", "foo=1", f"output={tmp_path / 'out'}", cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "prepare_assembly_data", "foo")
    assert list(tmp_path.iterdir()) == []
