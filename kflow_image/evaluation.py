"""Score a trained image model: FD-<net>, KID, precision/recall, accuracy, CDR (and Inception FID).

All distances compare generated samples with the held-out *reference* split, on features of
the classifier trained in-project on the *training* split (:mod:`kflow_image.classifier`).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import nn

from kflow.path import KAmplitudePath
from kflow_image.classifier import FeatureNet, PixelFeatures
from kflow_image.data import ImageSplits, stack_dataset
from kflow_image.metrics import (class_drop_ratio, classifier_accuracy, frechet_distance, inception_fid,
                                 kernel_distance, precision_recall)
from kflow_image.train import SamplerSpec, balanced_labels, generate


def sample_metrics(samples: torch.Tensor, reference: torch.Tensor, feature_net: FeatureNet | PixelFeatures,
                   pr_k: int = 3, kid_subsets: int = 50, kid_subset_size: int = 1000,
                   seed: int = 0) -> dict[str, float | str]:
    """Distribution metrics of ``samples (N, C, H, W)`` against ``reference (M, C, H, W)``.

    Returns:
        ``fd``, ``fd_net``, ``kid``, ``kid_std``, ``precision``, ``recall``.
    """
    fake, real = feature_net.features(samples), feature_net.features(reference)
    kid = kernel_distance(real, fake, kid_subsets, kid_subset_size, seed)
    pr = precision_recall(real, fake, pr_k)
    return {"fd": frechet_distance(real, fake), "fd_net": feature_net.name, "kid": kid.mean, "kid_std": kid.std,
            "precision": pr.precision, "recall": pr.recall}


@torch.no_grad()
def evaluate_model(model: nn.Module, path: KAmplitudePath, splits: ImageSplits,
                   feature_net: FeatureNet | PixelFeatures, num_samples: int = 1000,
                   sampler: SamplerSpec = SamplerSpec(), seed: int = 0, device: str | torch.device = "cpu",
                   cdr: bool = True, cdr_drop_after: float = 0.3, inception_weights: str | None = None,
                   batch_size: int = 500, progress: bool = False) -> dict:
    """Generate ``num_samples`` images and score them.

    Class-conditional data sets get balanced labels, ``accuracy`` (classifier agreement with
    the requested label) and, if ``cdr``, the class-drop ratio from a second pass with the
    same noise and the label dropped after ``cdr_drop_after`` K. ``progress`` shows a bar
    over sample batches.

    Returns:
        Plain dict: ``fd``, ``fd_net``, ``kid``, ``kid_std``, ``precision``, ``recall``,
        ``accuracy``, ``cdr``, ``fd_per_class_kept/dropped``, ``nfe``, ``cfg_scale``,
        ``num_samples``, ``sample_time_s``, ``inception_fid`` (None unless weights given),
        ``classifier_test_accuracy``.
    """
    reference, reference_labels = stack_dataset(splits.reference)
    conditional = splits.num_classes > 1
    labels = balanced_labels(num_samples, splits.num_classes) if conditional else None
    start = time.perf_counter()
    result = generate(model, path, num_samples, splits.image_shape, sampler, labels=labels, seed=seed,
                      device=device, batch_size=batch_size, progress=progress)
    metrics: dict = {"sample_time_s": time.perf_counter() - start, "nfe": result.nfe,
                     "cfg_scale": sampler.cfg_scale, "num_samples": num_samples,
                     "classifier_test_accuracy": feature_net.test_accuracy}
    metrics.update(sample_metrics(result.images, reference, feature_net, seed=seed))
    metrics["accuracy"] = classifier_accuracy(feature_net.predict(result.images), labels) if conditional else None
    metrics["cdr"] = None
    if conditional and cdr:
        dropped = generate(model, path, num_samples, splits.image_shape,
                           replace(sampler, drop_cond_after=cdr_drop_after), labels=labels,
                           noise=result.noise, device=device, batch_size=batch_size, progress=progress)
        ratio = class_drop_ratio(feature_net.features(reference), reference_labels,
                                 feature_net.features(result.images), feature_net.features(dropped.images), labels)
        metrics.update(cdr=ratio.cdr, accuracy_dropped=classifier_accuracy(feature_net.predict(dropped.images), labels),
                       fd_per_class_kept=ratio.fd_kept, fd_per_class_dropped=ratio.fd_dropped)
    metrics["inception_fid"] = inception_fid(result.images, reference, inception_weights, device)
    return metrics


def reference_floor(splits: ImageSplits, feature_net: FeatureNet | PixelFeatures, seed: int = 0) -> dict:
    """Metrics of *training* images against the reference split: the best a model can expect."""
    train, _ = stack_dataset(splits.train, max_items=len(splits.reference))
    reference, _ = stack_dataset(splits.reference)
    return sample_metrics(train, reference, feature_net, seed=seed)

