"""scripts/train_image.py and scripts/sample_image.py end to end on a tiny budget."""

import json

import pytest
from _scripts import TINY_IMAGE_RUN, run_script

from kflow_image.evaluation import QUALITY_METRICS
from kflow_image.experiment import run_experiment


def run_ok(script: str, *overrides: str) -> dict | None:
    """Run ``scripts/<script>``, which must succeed; the first JSON object it printed (None if none)."""
    proc = run_script(script, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])[0] if "{" in proc.stdout else None


@pytest.mark.slow
def test_train_then_sample(tmp_path):
    out = tmp_path / "run"
    run_ok(
        "train_image.py",
        *TINY_IMAGE_RUN,
        "train.steps=3",
        "sample.num_samples=40",
        "sample.total_steps=6",
        f"eval.cache_dir={tmp_path / 'cache'}",
        f"output_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    for key in QUALITY_METRICS:
        assert isinstance(metrics[key], float), key
    assert metrics["fd_net"] == "digits-cnn" and metrics["nfe"] == 6 and metrics["train_steps"] == 3
    assert metrics["transform"] == "wavelet" and metrics["num_bands"] == 3
    for name in ("samples.png", "spectra.png", "band_energy.png", "loss_curve.png", "checkpoints/last.pt"):
        assert (out / name).exists(), name

    printed = run_ok(
        "sample_image.py", f"run_dir={out}", "mode=noise_split", "noise_split.rows=2", "noise_split.per_row=3", "sample.total_steps=3"
    )  # fmt: skip
    assert (out / "samples" / "noise_split_share_high.png").exists() and printed["nfe"] == 3


def test_bad_transform_is_a_clear_config_error(tmp_path):
    proc = run_script(
        "train_image.py",
        "transform=fourier",
        "transform.name=dct",
        f"output_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
    )
    assert proc.returncode != 0
    assert "unknown transform.name 'dct'" in proc.stderr


@pytest.mark.slow
def test_autoencoder_then_latent_run_then_edit(tmp_path):
    codec = tmp_path / "ae.pt"
    ae_settings = ["autoencoder.steps=3", "autoencoder.num_down=1", "autoencoder.hidden=8"]
    printed = run_ok("train_autoencoder.py", "data=digits", *ae_settings, f"output={codec}")
    assert printed["latent_shape"] == [4, 4, 4]
    out = tmp_path / "run"  # training in-process (train_image.py itself is run above); the CLI samples from it
    run_experiment(
        {
            "output_dir": str(out),
            "data": {"name": "digits"},
            "codec": {"name": "autoencoder", "path": str(codec), "cache_dir": str(tmp_path / "cache")},
            "transform": {"name": "pca"},
            "model": {"hidden": 32, "depth": 1, "heads": 2},
            "train": {"steps": 2, "batch_size": 16, "progress": False},
            "sample": {"total_steps": 3},
            "eval": {"enabled": False},
            "figures": False,
        }
    )
    assert json.loads((out / "metrics.json").read_text())["data_shape"] == [4, 4, 4]
    run_ok("sample_image.py", f"run_dir={out}", "mode=edit", "edit.num_samples=2", "edit.amounts=[-1,0,1]")
    assert (out / "samples" / "edit.png").exists()


def test_unknown_key_is_refused_before_work(tmp_path):
    proc = run_script(
        "train_image.py", "transform.foo=1", f"output_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}"
    )
    assert proc.returncode != 0 and "transform.foo" in proc.stderr
    assert not (tmp_path / "config.yaml").exists()
