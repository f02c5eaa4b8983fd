"""A small CNN trained in the project: the feature network behind FD-<net>, KID, P/R and accuracy.

No pretrained weights can be downloaded here, so the metrics use the penultimate layer of a
classifier trained on the same data set's *training* split. It is trained once per data set:
its weights are cached under a key made of a hash of the training images and labels
(:func:`dataset_fingerprint`) and the training settings, so every later run on the same data
(whatever the data set's name or folder) loads it, and changed data trains a new one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from kflow_image.data import ImageSplits, stack_dataset

MIN_FEATURE_ACCURACY = 0.98
"""Default ``eval.min_feature_accuracy``: FD/KID/P/R/accuracy from a feature CNN below this
held-out accuracy are marked invalid (a 1-epoch CNN at 0.19 accuracy made a 5-step model
score FD 0.03)."""


class SmallCNN(nn.Module):
    """Four batch-normalised conv layers, a 4x4 pooled map, a feature layer and a linear head.

    The 4x4 map keeps where the strokes are (global average pooling loses it: the earlier
    three-layer, globally pooled net reached only ~0.6 accuracy on MNIST after 10 epochs);
    with it the net reaches >= 0.98 held-out accuracy on MNIST and on the 8x8 digits.

    Args:
        channels: input channels.
        num_classes: output classes.
        width: channels of the first conv (doubled after the first stride).
        feature_dim: size of the penultimate features.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 32, feature_dim: int = 64):
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]

        self.body = nn.Sequential(
            *block(channels, width, 1),
            *block(width, 2 * width, 2),
            *block(2 * width, 2 * width, 1),
            *block(2 * width, 2 * width, 2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(2 * width * 16, feature_dim),
            nn.GELU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, C, H, W)`` in [-1, 1]. Returns penultimate features ``(B, feature_dim)``."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, C, H, W)``. Returns logits ``(B, num_classes)``."""
        return self.head(self.features(x))


@dataclass
class FeatureNet:
    """A trained feature network and what identifies it.

    Attributes:
        model: the classifier (eval mode).
        name: metric name suffix, e.g. ``"digits-cnn"`` (FD-digits-cnn).
        test_accuracy: accuracy on the held-out reference split.
    """

    model: SmallCNN
    name: str
    test_accuracy: float
    from_cache: bool = False

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Features of ``(N, C, H, W)`` images, returned as ``(N, feature_dim)`` float64 on CPU."""
        device = next(self.model.parameters()).device
        chunks = [
            self.model.features(images[i : i + batch_size].to(device)).double().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted labels ``(N,)`` for ``(N, C, H, W)`` images."""
        device = next(self.model.parameters()).device
        return torch.cat(
            [
                self.model(images[i : i + batch_size].to(device)).argmax(-1).cpu()
                for i in range(0, len(images), batch_size)
            ]
        )


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each ``(N, C, H, W)`` image by up to ``max_shift`` pixels (background fill -1)."""
    if max_shift == 0:
        return images
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)
    h, w = images.shape[-2:]
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + h, dx : dx + w]


def accuracy(model: nn.Module, data: Dataset, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` on a data set of ``(image, label)`` items."""
    images, labels = stack_dataset(data)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(images[i : i + 512].to(device)).argmax(-1).cpu() for i in range(0, len(images), 512)])
    return (pred == labels).double().mean().item()


def dataset_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-1 of a data set's content: shapes, float32 pixel bytes and int64 labels.

    Args:
        images: ``(N, C, H, W)``.
        labels: ``(N,)``.

    Returns:
        40 hex digits; equal for equal content, whatever the data set is called.
    """
    digest = hashlib.sha1()
    digest.update(json.dumps([list(images.shape), list(labels.shape)]).encode())
    digest.update(images.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    digest.update(labels.detach().to(torch.int64).cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def classifier_cache_key(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, batch_size: int, lr: float, seed: int
) -> str:
    """Cache key of a feature CNN: the data's content hash plus everything that shapes the training."""
    spec = {
        "content": dataset_fingerprint(images, labels),
        "classes": num_classes,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "arch": "SmallCNN-bn4-pool4-64",
        "version": 3,
    }
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def fit_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_shift: int,
    device: torch.device,
    desc: str = "feature CNN",
    progress: bool = True,
    verbose: bool = False,
) -> None:
    """Adam with cosine decay and random shifts of up to ``max_shift`` pixels, in place.

    Args:
        model: the classifier, on ``device``.
        images, labels: ``(N, C, H, W)`` and ``(N,)``.
        epochs, batch_size, lr, seed: the optimisation.
        max_shift: augmentation shift in pixels.
        device: where to train.
        desc, progress: the progress bar's text, and whether to show it.
        verbose: print the per-epoch loss.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start = time.time()
    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for i in range(0, len(images), batch_size):
            idx = order[i : i + batch_size]
            x = random_shift(images[idx], max_shift, generator).to(device)
            loss = F.cross_entropy(model(x), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / len(images):.4f}")
        if verbose:
            print(f"classifier epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f} ({time.time() - start:.1f}s)")


def train_classifier(
    splits: ImageSplits,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    verbose: bool = False,
    progress: bool = True,
) -> FeatureNet:
    """Train the feature CNN on ``splits.train``, or load it from ``cache_dir`` if trained before.

    The cache file ``classifier-<name>-<key>.pt`` is keyed by :func:`classifier_cache_key`
    (content hash of the training images and labels, and the settings below), so a second
    call on the same data loads it (``from_cache`` is then true; the data set's name does not
    matter) and changed data retrains.

    Args:
        splits: data set; needs at least 2 classes.
        epochs: passes over the training split.
        batch_size: minibatch size.
        lr: Adam learning rate (cosine-decayed to 0).
        seed: seed for init, shuffling and augmentation.
        device: where to train.
        cache_dir: folder for ``classifier-<name>-<key>.pt``; ``None`` trains without caching.
        verbose: print the per-epoch loss.
        progress: a progress bar over epochs (tqdm, on stderr).

    Returns:
        The trained :class:`FeatureNet`, in eval mode on ``device``.
    """
    if splits.num_classes < 2:
        raise ValueError(
            f"classifier: data set {splits.name!r} has {splits.num_classes} classes; "
            "FD-<net> needs a labelled data set (use fd_net='pixels' instead)"
        )
    device = torch.device(device)
    channels = splits.image_shape[0]
    images, labels = stack_dataset(splits.train)
    key = classifier_cache_key(images, labels, splits.num_classes, epochs, batch_size, lr, seed)
    name = f"{splits.name}-cnn"
    cache = Path(cache_dir) / f"classifier-{splits.name}-{key}.pt" if cache_dir is not None else None
    torch.manual_seed(seed)
    model = SmallCNN(channels, splits.num_classes).to(device)
    if (loaded := _load_cached(model, cache_dir, key, device)) is not None:
        return FeatureNet(loaded[0], name, loaded[1], from_cache=True)

    desc = f"feature CNN ({splits.name}, {len(images)} images)"
    max_shift = max(1, splits.image_shape[-1] // 14)
    fit_classifier(model, images, labels, epochs, batch_size, lr, seed, max_shift, device, desc, progress, verbose)
    test_accuracy = accuracy(model, splits.reference, device)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "test_accuracy": test_accuracy, "key": key}, tmp)
        tmp.replace(cache)
    model.eval()
    return FeatureNet(model, name, test_accuracy)


def _load_cached(
    model: nn.Module, cache_dir: str | Path | None, key: str, device: torch.device
) -> tuple[nn.Module, float] | None:
    """``(model with the cached weights, its held-out accuracy)`` of a cache file with this content
    key (under any data-set name), or ``None`` when there is none."""
    cached = sorted(Path(cache_dir).glob(f"classifier-*-{key}.pt")) if cache_dir is not None else []
    if not cached:
        return None
    state = torch.load(cached[0], map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval(), float(state["test_accuracy"])


class PixelFeatures:
    """Fallback features for unlabelled data: pixels average-pooled to at most 16x16, flattened.

    Used when no classifier can be trained (``num_classes < 2``); the metric is then named
    FD-pixels16. ``predict`` is unavailable.
    """

    name = "pixels16"
    test_accuracy = float("nan")
    from_cache = False

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C * h * w)`` float64 with ``h, w <= 16``."""
        h, w = images.shape[-2:]
        pooled = F.adaptive_avg_pool2d(images.float(), (min(h, 16), min(w, 16)))
        return pooled.flatten(1).double().cpu()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        raise ValueError("classifier: pixel features have no classifier head (unlabelled data)")


def feature_net_validity(feature_net, min_accuracy: float = MIN_FEATURE_ACCURACY) -> dict:
    """Whether scores from ``feature_net`` can be trusted: its held-out accuracy >= ``min_accuracy``.

    Networks without a classifier head (pixel features, Inception) have no accuracy to check and
    are valid. Returns the keys written to ``metrics.json``: ``metrics_valid``,
    ``feature_net_accuracy``, ``feature_net_min_accuracy`` and ``invalid_reason`` (``None`` if valid).
    """
    accuracy = float(getattr(feature_net, "test_accuracy", float("nan")))
    checked = accuracy == accuracy  # NaN: no head to check
    valid = not checked or accuracy >= min_accuracy
    reason = None
    if not valid:
        reason = (
            f"feature net {feature_net.name} has held-out accuracy {accuracy:.3f} < eval.min_feature_accuracy="
            f"{min_accuracy}: fd/kid/precision/recall/accuracy/cdr are not trustworthy (train it longer: "
            "eval.classifier_epochs)"
        )
    return {
        "metrics_valid": valid,
        "feature_net_accuracy": accuracy if checked else None,
        "feature_net_min_accuracy": min_accuracy,
        "invalid_reason": reason,
    }
