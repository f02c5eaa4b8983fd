"""An evaluation that cannot fool itself: under-trained feature nets are flagged, 256² data never trains a CNN."""

import json

import numpy as np
import torch
from PIL import Image

from kflow_image.classifier import PixelFeatures, feature_net_validity
from kflow_image.experiment import run_experiment
from kflow_image.metrics import frechet_bootstrap, frechet_distance

TINY = {
    "transform": {"name": "none", "num_bands": 1},
    "model": {"hidden": 32, "depth": 1, "heads": 2},
    "train": {"steps": 2, "batch_size": 8, "progress": False},
    "sample": {"num_samples": 12, "total_steps": 2, "batch_size": 12},
    "figures": False,
}


def folder_of_images(root, size: int = 16, per_class: int = 6):
    """Two classes of random grey PNGs: a tiny stand-in for a 256² folder data set."""
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def large_image_run(tmp_path, **eval_keys) -> dict:
    data = {
        "name": "folder",
        "root": str(folder_of_images(tmp_path / "images")),
        "size": 16,
        "channels": 1,
        "reference_fraction": 0.34,
    }
    cache = tmp_path / "cache"
    cfg = {**TINY, "output_dir": str(tmp_path / "run"), "data": data}
    cfg["eval"] = {"feature_cnn_max_side": 8, "cache_dir": str(cache), "cdr": False, **eval_keys}
    return run_experiment(cfg)


def test_large_images_never_train_a_cnn_and_are_scored_by_inception(tmp_path, inception_file):
    metrics = large_image_run(tmp_path, inception_weights=str(inception_file))
    assert not list((tmp_path / "cache").glob("classifier-*.pt"))  # no feature CNN was trained
    assert isinstance(metrics["inception_fid"], float) and metrics["inception_fid"] >= 0
    assert metrics.get("fd") is None and metrics["accuracy"] is None and "reference_floor" not in metrics


def test_missing_inception_file_is_said_in_one_line_before_training(tmp_path, capsys):
    metrics = large_image_run(tmp_path)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("eval: no FID for this run: 16x16 images") and "eval.inception_weights" in lines[0]
    assert sum("eval.inception_weights" in line for line in lines) == 1
    assert metrics["fd"] is None and metrics["inception_fid"] is None
    assert not list((tmp_path / "cache").glob("classifier-*.pt"))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["evaluation_skipped"].startswith("large images")


def test_scores_from_an_under_trained_feature_cnn_are_marked_invalid(tmp_path, capsys):
    cfg = {**TINY, "output_dir": str(tmp_path / "run"), "data": {"name": "digits"}}
    cfg["eval"] = {"classifier_epochs": 1, "cache_dir": str(tmp_path / "cache"), "cdr": False}
    metrics = json.loads(json.dumps(run_experiment(cfg)))
    assert metrics["feature_net_accuracy"] < 0.98 and metrics["metrics_valid"] is False
    assert "eval.min_feature_accuracy=0.98" in metrics["invalid_reason"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics_valid"] is False
    assert "warning: feature net digits-cnn has held-out accuracy" in capsys.readouterr().out
    floor = metrics["reference_floor"]  # the floor is measured at the samples' N, with its interval
    assert floor["num_items"] == 12 and floor["fd_ci_low"] <= floor["fd"] <= floor["fd_ci_high"]
    assert metrics["fd_ci_low"] <= metrics["fd"] <= metrics["fd_ci_high"]


def test_validity_threshold_and_head_less_features():
    class Net:
        name, test_accuracy = "mnist-cnn", 0.985

    assert feature_net_validity(Net())["metrics_valid"] and not feature_net_validity(Net(), 0.99)["metrics_valid"]
    pixels = feature_net_validity(PixelFeatures())
    assert pixels["metrics_valid"] and pixels["feature_net_accuracy"] is None


def test_fd_interval_covers_the_spread_of_fresh_sample_sets():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(1000, 16, generator=g, dtype=torch.float64)

    def draw():
        return torch.randn(400, 16, generator=g, dtype=torch.float64) * 1.1 + 0.1

    ci = frechet_bootstrap(reference, draw(), num_resamples=200)
    assert ci.low < ci.estimate < ci.high
    fresh = [frechet_distance(reference, draw()) for _ in range(20)]
    assert sum(ci.low <= fd <= ci.high for fd in fresh) >= 14  # a 95% interval, re-centred on the estimate
