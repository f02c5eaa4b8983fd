"""Score a trained image model: FD-<net>, KID, precision/recall, accuracy, CDR, and Inception FID.

Samples are generated batch by batch and each batch is turned into features at once; only
features are kept (the in-project network's D = 64, and at most ``pr_samples`` Inception
features for precision/recall), never the images. Fréchet distances come from running float64
statistics (:class:`kflow_image.fid.FrechetScorer`, torchmetrics). The in-project distance
compares with the held-out *reference* split on the classifier of :mod:`kflow_image.classifier`
and is reported as ``fd`` with ``fd_net`` naming the network (FD-<net>, never "FID"); only
``inception_fid`` is an FID.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from kflow.path import KAmplitudePath
from kflow_image.classifier import FeatureNet, PixelFeatures
from kflow_image.data import ImageSplits
from kflow_image.fid import FrechetScorer, InceptionFeatures, ReferenceStats, iterate_batches, reference_stats
from kflow_image.metrics import (
    class_drop_ratio,
    classifier_accuracy,
    frechet_bootstrap,
    kernel_distance,
    precision_recall,
)
from kflow_image.train import SamplerSpec, balanced_labels, generate

QUALITY_METRICS = ("fd", "kid", "precision", "recall", "accuracy", "cdr")
"""The sample-quality scores :func:`evaluate_model` reports (``cdr`` is ``None`` for one class)."""


def frechet_of_features(real: torch.Tensor, fake: torch.Tensor, batch_size: int = 4096) -> float:
    """Fréchet distance of two feature sets ``(N, D)`` and ``(M, D)`` through :class:`FrechetScorer`."""
    scorer = FrechetScorer()
    for i in range(0, len(real), batch_size):
        scorer.add_reference(real[i : i + batch_size])
    for i in range(0, len(fake), batch_size):
        scorer.add_samples(fake[i : i + batch_size])
    return scorer.compute()


def sample_metrics(
    samples: torch.Tensor,
    reference: torch.Tensor,
    feature_net: FeatureNet | PixelFeatures,
    pr_k: int = 3,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float | str]:
    """Distribution metrics of ``samples (N, C, H, W)`` against ``reference (M, C, H, W)``.

    Returns:
        ``fd``, ``fd_net``, ``kid``, ``kid_std``, ``precision``, ``recall``.
    """
    return feature_metrics(
        feature_net.features(reference),
        feature_net.features(samples),
        feature_net.name,
        pr_k,
        kid_subsets,
        kid_subset_size,
        seed,
    )


def feature_metrics(
    real: torch.Tensor,
    fake: torch.Tensor,
    net_name: str,
    pr_k: int = 3,
    kid_subsets: int = 50,
    kid_subset_size: int = 1000,
    seed: int = 0,
    pr_samples: int | None = None,
) -> dict[str, float | str]:
    """FD, KID and precision/recall of feature sets ``real (N, D)`` and ``fake (M, D)``.

    ``pr_samples`` caps the points per set that precision/recall uses (the first ones).
    """
    kid = kernel_distance(real, fake, kid_subsets, kid_subset_size, seed)
    pr = precision_recall(real[:pr_samples], fake[:pr_samples], pr_k)
    return {
        "fd": frechet_of_features(real, fake),
        "fd_net": net_name,
        "kid": kid.mean,
        "kid_std": kid.std,
        "precision": pr.precision,
        "recall": pr.recall,
    }


def draw_noise(generator: torch.Generator, num: int, shape: Sequence[int]) -> torch.Tensor:
    """``(num, *shape)`` source draws, one sample at a time, so they do not depend on the batch size."""
    return torch.stack([torch.randn(*shape, generator=generator) for _ in range(num)])


def features_in_batches(
    data, feature_fn, batch_size: int, max_items: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features ``(N, D)`` and labels ``(N,)`` (or ``None``) of a data set, ``batch_size`` images at a time."""
    features, labels = [], []
    for images, batch_labels in iterate_batches(data, batch_size, max_items):
        features.append(feature_fn(images))
        labels.append(batch_labels)
    return torch.cat(features), (None if labels[0] is None else torch.cat(labels))


def inception_reference(
    splits: ImageSplits,
    inception: InceptionFeatures,
    stats_path: str | Path | None,
    keep_features: int,
    batch_size: int,
) -> ReferenceStats:
    """Inception statistics of the reference: from ``stats_path`` (.npz) or computed from ``splits.reference``."""
    if stats_path:
        return ReferenceStats.load(stats_path)
    return reference_stats(splits.reference, inception, inception.name, batch_size, keep_features)


class _KeptFeatures:
    """Feature batches kept up to ``limit`` rows (``None``: all)."""

    def __init__(self, limit: int | None = None):
        self.limit, self.parts, self.count = limit, [], 0

    def add(self, features: torch.Tensor) -> None:
        room = len(features) if self.limit is None else max(self.limit - self.count, 0)
        if room:
            self.parts.append(features[:room])
            self.count += len(self.parts[-1])

    def tensor(self) -> torch.Tensor | None:
        return torch.cat(self.parts) if self.parts else None


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    path: KAmplitudePath,
    splits: ImageSplits,
    feature_net: FeatureNet | PixelFeatures,
    num_samples: int = 1000,
    sampler: SamplerSpec | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cdr: bool = True,
    cdr_drop_after: float = 0.3,
    inception_weights: str | None = None,
    batch_size: int = 500,
    progress: bool = False,
    inception_reference_stats: str | None = None,
    pr_k: int = 3,
    pr_samples: int = 10_000,
    codec=None,
    sample_shape: Sequence[int] | None = None,
) -> dict:
    """Generate ``num_samples`` images batch by batch and score them as they come.

    Class-conditional data sets get balanced labels, ``accuracy`` (classifier agreement with the
    requested label) and, if ``cdr``, the class-drop ratio from a second pass with the same noise
    and the label dropped after ``cdr_drop_after`` K. Sample i's source noise depends on ``seed``
    (also the KID subsets') and i only, not on ``batch_size`` (samples generated at once).

    Args:
        model, path, splits: the trained network, its K-amplitude path and the data set
            (``splits.reference`` is the comparison set of FD-<net>).
        feature_net: the in-project feature network (or pixel features); ``None`` scores only
            the Inception FID (256² data: no CNN is trained there).
        num_samples, sampler: N (50,000 for the paper's protocol) and the integration settings.
        inception_weights: local Inception file (``None``: no FID; nothing is downloaded), with
            ``inception_reference_stats`` its reference ``.npz`` (``None``: computed here).
        pr_k, pr_samples, codec, sample_shape: k of precision/recall and the points per set it uses;
            the latent codec (samples are decoded before scoring) and the shape the model samples in.

    Returns:
        ``fd`` (+ ``fd_ci_*``), ``fd_net``, ``kid(_std)``, ``precision``, ``recall``, ``accuracy``, ``cdr``,
        ``fd_per_class_kept/dropped``, ``nfe``, ``cfg_scale``, ``num_samples``, timings, ``inception_*``
        (None without Inception), ``classifier_test_accuracy``, ``classifier_from_cache``.
    """
    start_eval = time.perf_counter()
    sampler = sampler or SamplerSpec()
    conditional = splits.num_classes > 1
    labels = balanced_labels(num_samples, splits.num_classes) if conditional else None
    drop_after = cdr_drop_after if cdr and conditional and feature_net is not None else None  # None: no CDR pass
    scores = _SampleScores.create(
        splits, feature_net, inception_weights, inception_reference_stats, device, pr_samples, batch_size
    )
    shape = tuple(sample_shape or splits.image_shape)
    nfe, sample_time = _sample_and_score(
        model, path, shape, sampler, labels, num_samples, batch_size, seed, device, codec, progress, drop_after, scores
    )  # fmt: skip
    metrics: dict = {"nfe": nfe, "cfg_scale": sampler.cfg_scale, "num_samples": num_samples}
    metrics.update(scores.feature_scores(labels, drop_after is not None, pr_k, seed, pr_samples))
    metrics.update(scores.inception_scores(pr_k))
    metrics.update(sample_time_s=sample_time, eval_time_s=time.perf_counter() - start_eval)
    return metrics


class _SampleScores:
    """What :func:`evaluate_model` accumulates over the sample batches, and the scores it makes of it.

    Args:
        feature_net: the in-project features (``None``: Inception FID only).
        classify: predict each sample's class (class-conditional data with a feature net).
        inception: the Inception network (``None``: no FID) and ``inc_stats`` its reference statistics.
        pr_samples: Inception features kept for precision/recall.
    """

    def __init__(self, feature_net, classify: bool, inception, inc_stats: ReferenceStats | None, pr_samples: int):
        self.feature_net, self.classify, self.inception, self.inc_stats = feature_net, classify, inception, inc_stats
        self.reference, self.reference_labels = None, None
        self.fake, self.dropped, self.predicted, self.predicted_dropped = _KeptFeatures(), _KeptFeatures(), [], []
        if inception is not None:
            self.inc_scorer = FrechetScorer()
            self.inc_scorer.load_reference(inc_stats)
            self.inc_kept = _KeptFeatures(pr_samples)

    @classmethod
    def create(
        cls, splits: ImageSplits, feature_net, inception_weights, stats_path, device, pr_samples: int, batch_size: int
    ) -> _SampleScores:
        """Reference features of ``feature_net`` and (with ``inception_weights``) the Inception reference statistics."""
        classify = splits.num_classes > 1 and feature_net is not None
        reference = features_in_batches(splits.reference, feature_net.features, batch_size) if feature_net else None
        inception = InceptionFeatures(inception_weights, device=device) if inception_weights else None
        inc_stats = None
        if inception is not None:
            inc_stats = inception_reference(splits, inception, stats_path, pr_samples, batch_size)
        scores = cls(feature_net, classify, inception, inc_stats, pr_samples)
        scores.reference, scores.reference_labels = reference if reference is not None else (None, None)
        return scores

    def add(self, images: torch.Tensor) -> None:
        """Score a batch of samples ``(n, C, H, W)`` (features, predicted class, Inception features)."""
        if self.feature_net is not None:
            self.fake.add(self.feature_net.features(images))
        if self.classify:
            self.predicted.append(self.feature_net.predict(images))
        if self.inception is not None:
            feats = self.inception(images)
            self.inc_scorer.add_samples(feats)
            self.inc_kept.add(feats.float())

    def add_dropped(self, images: torch.Tensor) -> None:
        """Score a batch of the class-drop pass ``(n, C, H, W)``."""
        self.dropped.add(self.feature_net.features(images))
        self.predicted_dropped.append(self.feature_net.predict(images))

    def feature_scores(self, labels: torch.Tensor | None, cdr: bool, pr_k: int, seed: int, pr_samples: int) -> dict:
        """The feature net's test accuracy, FD (+ bootstrap CI), KID, precision/recall, accuracy and class-drop ratio."""
        metrics: dict = {
            "classifier_test_accuracy": getattr(self.feature_net, "test_accuracy", None),
            "classifier_from_cache": bool(getattr(self.feature_net, "from_cache", False)),
        }
        reference, reference_labels = self.reference, self.reference_labels
        fake_features = self.fake.tensor()
        if self.feature_net is not None:
            metrics.update(
                feature_metrics(reference, fake_features, self.feature_net.name, pr_k, seed=seed, pr_samples=pr_samples)
            )
            ci = frechet_bootstrap(reference, fake_features, seed=seed)
            metrics.update(fd_ci_low=ci.low, fd_ci_high=ci.high, fd_ci_level=ci.level)
        metrics["accuracy"] = classifier_accuracy(torch.cat(self.predicted), labels) if self.classify else None
        metrics["cdr"] = None
        if cdr:
            ratio = class_drop_ratio(reference, reference_labels, fake_features, self.dropped.tensor(), labels)
            metrics.update(
                cdr=ratio.cdr,
                accuracy_dropped=classifier_accuracy(torch.cat(self.predicted_dropped), labels),
                fd_per_class_kept=ratio.fd_kept,
                fd_per_class_dropped=ratio.fd_dropped,
            )
        return metrics

    def inception_scores(self, pr_k: int) -> dict:
        """``inception_fid``, ``inception_precision``, ``inception_recall`` (``None`` without Inception)."""
        metrics: dict = dict(inception_fid=None, inception_precision=None, inception_recall=None)
        if self.inception is not None:
            metrics["inception_fid"] = self.inc_scorer.compute()
            if self.inc_stats.features is not None:
                pr = precision_recall(torch.from_numpy(self.inc_stats.features), self.inc_kept.tensor(), pr_k)
                metrics.update(inception_precision=pr.precision, inception_recall=pr.recall)
        return metrics


def _sample_and_score(
    model: nn.Module,
    path: KAmplitudePath,
    shape: tuple[int, ...],
    sampler: SamplerSpec,
    labels: torch.Tensor | None,
    num_samples: int,
    batch_size: int,
    seed: int,
    device: str | torch.device,
    codec,
    progress: bool,
    drop_after: float | None,
    scores: _SampleScores,
) -> tuple[int, float]:
    """Generate ``num_samples`` batch by batch into ``scores`` (and the class-drop pass unless ``drop_after`` is None).

    Returns:
        The NFE per sample and the seconds spent sampling.
    """
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    sample_time, nfe = 0.0, 0
    specs = [sampler] if drop_after is None else [sampler, replace(sampler, drop_cond_after=drop_after)]
    for start in tqdm(range(0, num_samples, batch_size), desc="evaluating", disable=not progress, leave=False):
        n = min(batch_size, num_samples - start)
        noise = draw_noise(generator, n, shape)
        y = labels[start : start + n] if labels is not None else None
        for index, spec in enumerate(specs):
            tick = time.perf_counter()
            result = generate(
                model, path, n, shape, spec, labels=y, noise=noise, batch_size=n, device=device, codec=codec
            )
            sample_time += time.perf_counter() - tick
            if index == 0:
                nfe = result.nfe
                scores.add(result.images)
            else:
                scores.add_dropped(result.images)
    return nfe, sample_time


def reference_floor(
    splits: ImageSplits,
    feature_net: FeatureNet | PixelFeatures,
    seed: int = 0,
    batch_size: int = 500,
    num_items: int | None = None,
) -> dict:
    """Metrics of real images outside the reference (the training split) against it: the floor.

    FD is biased upwards at small N, so pass the number of scored samples as ``num_items`` to
    get the floor at the same N (default: as many as the reference has). Adds ``fd_ci_low``,
    ``fd_ci_high`` (:func:`kflow_image.metrics.frechet_bootstrap`) and ``num_items``.
    """
    n = min(num_items or len(splits.reference), len(splits.train))
    train, _ = features_in_batches(splits.train, feature_net.features, batch_size, max_items=n)
    reference, _ = features_in_batches(splits.reference, feature_net.features, batch_size)
    ci = frechet_bootstrap(reference, train, seed=seed)
    return {
        **feature_metrics(reference, train, feature_net.name, seed=seed),
        "fd_ci_low": ci.low,
        "fd_ci_high": ci.high,
        "num_items": n,
    }
