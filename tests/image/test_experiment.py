"""A latent run end to end in-process: store, streamed PCA, EMA choice, eval.enabled=false, load_run."""

import json

import pytest
import torch
import yaml

from kflow_image.autoencoder import AutoencoderSettings, train_autoencoder
from kflow_image.data import load_digits
from kflow_image.experiment import load_run, run_experiment


@pytest.fixture(scope="module")
def codec_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec")
    result = train_autoencoder(load_digits(), AutoencoderSettings(latent_channels=2, hidden=8, num_down=1, steps=5))
    return str(result.codec.save(folder / "ae.pt"))


def run_config(tmp_path, codec_path, transform):
    return {
        "output_dir": str(tmp_path / transform["name"]),
        "data": {"name": "digits"},
        "codec": {"name": "autoencoder", "path": codec_path, "cache_dir": str(tmp_path / "cache")},
        "transform": transform,
        "model": {"hidden": 32, "depth": 1, "heads": 2},
        "train": {"steps": 4, "batch_size": 16, "ema_decay": 0.99, "progress": False, "log_every": 1},
        "sample": {"total_steps": 4},
        "eval": {"enabled": False},
    }


@pytest.mark.slow
def test_latent_run_trains_from_the_store_and_reloads(tmp_path, codec_path):
    metrics = run_experiment(run_config(tmp_path, codec_path, {"name": "pca", "num_bands": 2}))
    assert "fd" not in metrics and metrics["codec"] == "autoencoder" and metrics["data_shape"] == [2, 4, 4]
    assert metrics["num_bands"] == 2 and metrics["train_steps"] == 4 and metrics["sampled_with_ema"] is True
    out = tmp_path / "pca"
    for name in ("samples.png", "band_energy.png", "spectra.png", "pca_basis.pt", "metrics.json"):
        assert (out / name).exists(), name
    saved = yaml.safe_load((out / "config.yaml").read_text())  # the run-folder format of both branches
    assert saved["codec"]["name"] == "autoencoder" and saved["train"]["seed"] == 0 and saved["resume"] is False
    stores = list((tmp_path / "cache").glob("latents-autoencoder-*"))
    assert len(stores) == 1
    # LFM baseline: transform=none on the same latents reuses the store
    run_experiment(run_config(tmp_path, codec_path, {"name": "none", "num_bands": 1}))
    assert list((tmp_path / "cache").glob("latents-autoencoder-*")) == stores
    ema, raw = load_run(out), load_run(out, use_ema=False)
    assert ema.data.data_shape == (2, 4, 4) and ema.path.transform.shape == (2, 4, 4)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    for name, tensor in ema.model.state_dict().items():
        torch.testing.assert_close(tensor, state["ema"][name])
        torch.testing.assert_close(raw.model.state_dict()[name], state["model"][name])
    assert any(not torch.equal(state["ema"][k], state["model"][k]) for k in state["model"])
    # a folder of the older layout (run_config.json, top-level seed, train.resume) still loads
    saved["seed"], saved["train"]["resume"] = saved["train"].pop("seed"), saved.pop("resume")
    (out / "run_config.json").write_text(json.dumps(saved))
    (out / "config.yaml").unlink()
    old = load_run(out)
    assert old.config == ema.config
    for name, tensor in old.model.state_dict().items():
        torch.testing.assert_close(tensor, state["ema"][name])
