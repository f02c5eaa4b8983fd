"""The image scripts refuse bad input the scripts' way: one stderr line, exit 2, nothing written.

Each test runs a script from an empty working directory and checks that it stays empty: no
output folder, no Hydra run folder, no ``.log`` file (issue 22's user-visible bugs).
"""

import json

import pytest
import torch
from _scripts import assert_one_line_error, run_script

TINY = ["model.hidden=32", "model.depth=1", "model.heads=2", "train.progress=false"]


def assert_nothing_written(cwd, *paths):
    assert sorted(p.name for p in cwd.iterdir()) == [], sorted(p.name for p in cwd.iterdir())
    for path in paths:
        assert not path.exists(), path


@pytest.fixture
def cwd(tmp_path):
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


def test_missing_data_folder(tmp_path, cwd):
    out = tmp_path / "run"
    proc = run_script(
        "train_image.py", "data=folder", f"data.root={tmp_path / 'nope'}", f"output_dir={out}", *TINY, cwd=cwd
    )
    assert_one_line_error(proc, "train_image", "nope: image folder not found")
    assert_nothing_written(cwd, out)


def test_folder_of_non_images(tmp_path, cwd):
    data = tmp_path / "texts"
    data.mkdir()
    for name in ("a.txt", "b.csv", "c.json"):
        (data / name).write_text("not an image")
    out = tmp_path / "run"
    proc = run_script("train_image.py", "data=folder", f"data.root={data}", f"output_dir={out}", *TINY, cwd=cwd)
    assert_one_line_error(proc, "train_image", "texts: found 0 images")
    assert_nothing_written(cwd, out)


def test_missing_codec_file(tmp_path, cwd):
    out = tmp_path / "run"
    proc = run_script(
        "train_image.py", "codec=autoencoder", f"codec.path={tmp_path / 'ae.pt'}", f"output_dir={out}", *TINY, cwd=cwd
    )
    assert_one_line_error(proc, "train_image", "ae.pt: no autoencoder checkpoint there", "train_autoencoder.py")
    assert_nothing_written(cwd, out)


def test_autoencoder_codec_before_the_autoencoder_is_trained(cwd):
    proc = run_script("train_image.py", "codec=autoencoder", *TINY, cwd=cwd)  # default path, relative to cwd
    assert_one_line_error(proc, "train_image", "outputs/image/autoencoder-digits.pt", "train_autoencoder.py")
    assert_nothing_written(cwd)


def test_corrupt_inception_file_is_refused_at_start(tmp_path, cwd):
    junk = tmp_path / "inception-2015-12-05.pt"
    junk.write_bytes(b"\x80\x02 truncated download")
    out = tmp_path / "run"
    proc = run_script("train_image.py", f"eval.inception_weights={junk}", f"output_dir={out}", *TINY, cwd=cwd)
    assert_one_line_error(proc, "train_image", "inception-2015-12-05.pt: not a TorchScript Inception file")
    assert_nothing_written(cwd, out)


def test_corrupt_run_checkpoint_is_one_line_naming_the_file(tmp_path, cwd):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"output_dir": str(run), "model": {"hidden": 32, "depth": 1}}))
    torch.save({"format_version": 1, "model": torch.nn.Linear(2, 2)}, run / "checkpoints" / "last.pt")
    proc = run_script("sample_image.py", f"run_dir={run}", cwd=cwd)
    line = assert_one_line_error(proc, "sample_image", str(run / "checkpoints" / "last.pt"), "cannot be read")
    assert "weights_only" not in line
    assert_nothing_written(cwd, run / "samples")


@pytest.mark.parametrize(
    "script, overrides, message",
    [
        ("sample_image.py", ["run_dir=somewhere", "mode=nope"], "unknown mode 'nope'"),
        ("sample_image.py", [], "run_dir"),
        ("train_autoencoder.py", ["autoencoder.steps=0", "output=out/ae.pt"], "autoencoder.steps must be >= 1"),
        ("train_image.py", ["seed=3", "output_dir=out/run"], "seed is now train.seed"),
        ("train_image.py", ["train.resume=true", "output_dir=out/run"], "train.resume is now resume"),
        ("train_image.py", ["transform.foo=1", "output_dir=out/run"], "transform.foo"),
        ("benchmark_image.py", ["sample.method=leapfrog", "benchmark_dir=out/bench"], "sample.method"),
    ],
)
def test_refused_configs_leave_no_folder_and_no_log(cwd, script, overrides, message):
    proc = run_script(script, *overrides, cwd=cwd)
    assert_one_line_error(proc, script.removesuffix(".py"), message)
    assert_nothing_written(cwd)
