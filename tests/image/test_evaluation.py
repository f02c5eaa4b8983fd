"""Streamed evaluation of a model, and the feature CNN trained once per data set (cached by content)."""

import math
from functools import partial

import pytest
import torch
from torch.utils.data import TensorDataset

from kflow.path import KAmplitudePath
from kflow_image.classifier import dataset_fingerprint, train_classifier
from kflow_image.data import ImageSplits, load_digits, stack_dataset
from kflow_image.evaluation import QUALITY_METRICS, draw_noise, evaluate_model, frechet_of_features, reference_floor
from kflow_image.fid import ReferenceStats, reference_stats
from kflow_image.metrics import frechet_distance
from kflow_image.models import DiT
from kflow_image.train import SamplerSpec, TransformSpec, build_transform


@pytest.fixture(scope="module")
def small_digits():
    """400 training and 120 reference digits (keeps the CNN training below a second)."""
    full = load_digits()
    (train_x, train_y), (ref_x, ref_y) = stack_dataset(full.train, 400), stack_dataset(full.reference, 120)
    return ImageSplits(TensorDataset(train_x, train_y), TensorDataset(ref_x, ref_y), 10, full.image_shape, "digits")


def with_train(splits: ImageSplits, images: torch.Tensor, name: str) -> ImageSplits:
    labels = splits.train.tensors[1]
    return ImageSplits(TensorDataset(images, labels), splits.reference, splits.num_classes, splits.image_shape, name)


def test_feature_cnn_is_trained_once_per_data_content(small_digits, tmp_path):
    first = train_classifier(small_digits, epochs=1, cache_dir=tmp_path)
    assert not first.from_cache and len(list(tmp_path.glob("classifier-digits-*.pt"))) == 1
    second = train_classifier(small_digits, epochs=1, cache_dir=tmp_path)
    assert second.from_cache and second.test_accuracy == first.test_accuracy
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    images = small_digits.train.tensors[0]
    renamed = train_classifier(with_train(small_digits, images.clone(), "digits-copy"), epochs=1, cache_dir=tmp_path)
    assert renamed.from_cache  # same content under another name: no training
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5
    retrained = train_classifier(with_train(small_digits, changed, "digits"), epochs=1, cache_dir=tmp_path)
    assert not retrained.from_cache and len(list(tmp_path.glob("classifier-*.pt"))) == 2
    other_settings = train_classifier(small_digits, epochs=2, cache_dir=tmp_path)
    assert not other_settings.from_cache and len(list(tmp_path.glob("classifier-*.pt"))) == 3


def test_dataset_fingerprint_depends_on_content_only():
    images, labels = torch.rand(5, 1, 4, 4), torch.arange(5)
    assert dataset_fingerprint(images, labels) == dataset_fingerprint(images.clone(), labels.clone())
    assert dataset_fingerprint(images, labels) != dataset_fingerprint(images, labels.flip(0))
    assert dataset_fingerprint(images, labels) != dataset_fingerprint(images[:4], labels[:4])


def test_noise_of_a_sample_does_not_depend_on_the_batch_size():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    whole = draw_noise(g1, 10, (1, 8, 8))
    parts = torch.cat([draw_noise(g2, 3, (1, 8, 8)), draw_noise(g2, 7, (1, 8, 8))])
    assert torch.equal(whole, parts)


def test_frechet_of_features_equals_the_in_memory_distance():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 4, generator=g, dtype=torch.float64), torch.randn(200, 4, generator=g, dtype=torch.float64)
    assert frechet_of_features(a, b + 0.5, batch_size=64) == pytest.approx(frechet_distance(a, b + 0.5), abs=1e-9)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_evaluate_model_streams_samples_into_finite_metrics(small_digits, tmp_path, inception_file):
    transform = build_transform(TransformSpec("fourier", num_bands=2), small_digits.image_shape)
    path = KAmplitudePath(transform)
    torch.manual_seed(0)
    model = DiT(image_size=8, channels=1, patch=2, hidden=32, depth=1, heads=2, num_classes=10)
    net = train_classifier(small_digits, epochs=1, cache_dir=tmp_path)
    evaluate = partial(
        evaluate_model, model, path, small_digits, net, num_samples=30, sampler=SamplerSpec(total_steps=2)
    )
    with_inception = dict(batch_size=8, inception_weights=str(inception_file), pr_samples=20)
    metrics = evaluate(**with_inception)
    extra = ("accuracy_dropped", "inception_fid", "inception_precision", "inception_recall")
    for key in (*QUALITY_METRICS, *extra, "sample_time_s", "eval_time_s"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    assert metrics["fd_net"] == "digits-cnn" and metrics["nfe"] == 2 and metrics["classifier_from_cache"] is False
    assert metrics["fd"] > 0 and metrics["inception_fid"] > 0
    # the same samples in other batches: the same noise, so the same scores up to batched round-off
    again = evaluate(batch_size=30, cdr=False)
    assert again["fd"] == pytest.approx(metrics["fd"], rel=1e-4) and again["cdr"] is None
    assert again["inception_fid"] is None and again["inception_recall"] is None
    # precomputed reference statistics (what scripts/fid_stats.py writes) give the same FID
    from kflow_image.fid import InceptionFeatures

    inception = InceptionFeatures(inception_file)
    stats = reference_stats(small_digits.reference, inception, inception.name, batch_size=50, keep_features=20)
    stats.save(tmp_path / "ref.npz")
    from_file = evaluate(**with_inception, inception_reference_stats=str(tmp_path / "ref.npz"), cdr=False)
    assert from_file["inception_fid"] == pytest.approx(metrics["inception_fid"], rel=1e-6)
    assert from_file["inception_recall"] == metrics["inception_recall"]
    assert ReferenceStats.load(tmp_path / "ref.npz").num_samples == len(small_digits.reference)


def test_reference_floor_is_small_for_real_images(small_digits, tmp_path):
    net = train_classifier(small_digits, epochs=1, cache_dir=tmp_path)
    floor = reference_floor(small_digits, net)
    assert math.isfinite(floor["fd"]) and floor["fd"] >= 0 and 0 < floor["recall"] <= 1
