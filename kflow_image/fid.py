"""Fréchet distances through torchmetrics, Inception from a user-supplied file, reference statistics.

- :class:`FrechetScorer` — streams feature batches into torchmetrics' ``FrechetInceptionDistance``
  (sums of x and x xᵀ in float64) and returns its Fréchet distance. The same scorer serves the
  Inception FID and the in-project FD-<net>; only the feature network differs.
- :func:`load_inception` — the Inception network from a local file, never downloaded:
  a TorchScript file (``inception-2015-12-05.pt``, the StyleGAN / clean-fid format) or, when
  torch-fidelity is installed, torch-fidelity's state dict (``weights-inception-2015-12-05-*.pth``).
- :class:`ReferenceStats` — ``mu``, ``sigma`` and optional features for precision/recall,
  saved as ``.npz`` (pytorch-fid's ``mu``/``sigma`` keys), made by :func:`reference_stats`
  for a data set and :func:`save_folder_reference_stats` for an image folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # images (B, C, H, W) in [-1, 1] -> features (B, D)


class _PassThrough(nn.Module):
    """torchmetrics' "feature network" when the features are computed outside: returns them as float64."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


class FrechetScorer:
    """Running Gaussian statistics of reference and sample features and their Fréchet distance.

    The statistics and the distance are torchmetrics' ``FrechetInceptionDistance``
    (``mu = Σx / n``, ``Σ = (Σ x xᵀ - n mu muᵀ) / (n - 1)``, float64); features are passed in
    batch by batch, so no set of samples or features is ever held.

    Args:
        num_features: feature dimension D; ``None`` takes it from the first batch or statistics.
    """

    def __init__(self, num_features: int | None = None):
        self.num_features = num_features
        self._metric = None

    @property
    def metric(self):
        """The torchmetrics ``FrechetInceptionDistance`` holding the running sums."""
        if self._metric is None:
            if self.num_features is None:
                raise ValueError("fid: no features or statistics given yet")
            try:
                from torchmetrics.image.fid import FrechetInceptionDistance
            except ImportError as err:
                raise ImportError(
                    f"fid: torchmetrics is needed for FID/FD ({err}); pip install 'kflow[image]'"
                ) from None
            self._metric = FrechetInceptionDistance(
                feature=_PassThrough(self.num_features), reset_real_features=False, sync_on_compute=False
            )
        return self._metric

    def _check(self, features: torch.Tensor) -> torch.Tensor:
        if self.num_features is None and features.ndim == 2:
            self.num_features = features.shape[1]
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"fid: features must be (B, {self.num_features}), got {tuple(features.shape)}")
        return features.detach().cpu()

    def add_reference(self, features: torch.Tensor) -> None:
        """Fold a batch of reference features ``(B, D)`` into the reference statistics."""
        features = self._check(features)
        self.metric.update(features, real=True)

    def add_samples(self, features: torch.Tensor) -> None:
        """Fold a batch of sample features ``(B, D)`` into the sample statistics."""
        features = self._check(features)
        self.metric.update(features, real=False)

    @property
    def num_reference(self) -> int:
        return 0 if self._metric is None else int(self._metric.real_features_num_samples)

    @property
    def num_samples(self) -> int:
        return 0 if self._metric is None else int(self._metric.fake_features_num_samples)

    def load_reference(self, stats: ReferenceStats) -> None:
        """Use precomputed reference statistics instead of reference features."""
        self.num_features = self.num_features or stats.mu.shape[0]
        if stats.mu.shape != (self.num_features,):
            raise ValueError(
                f"fid: reference statistics have D={stats.mu.shape[0]}, features have D={self.num_features}"
            )
        n = stats.num_samples
        mu, sigma = torch.from_numpy(stats.mu).double(), torch.from_numpy(stats.sigma).double()
        self.metric.real_features_sum = n * mu
        self.metric.real_features_cov_sum = (n - 1) * sigma + n * torch.outer(mu, mu)
        self.metric.real_features_num_samples = torch.tensor(n)

    def reference_stats(self, name: str = "") -> ReferenceStats:
        """The reference statistics accumulated so far."""
        mu, sigma = _moments(self.metric.real_features_sum, self.metric.real_features_cov_sum, self.num_reference)
        return ReferenceStats(mu, sigma, self.num_reference, name)

    def sample_stats(self, name: str = "") -> ReferenceStats:
        """The sample statistics accumulated so far (same form as the reference's)."""
        mu, sigma = _moments(self.metric.fake_features_sum, self.metric.fake_features_cov_sum, self.num_samples)
        return ReferenceStats(mu, sigma, self.num_samples, name)

    def compute(self) -> float:
        """Fréchet distance between the reference and sample Gaussians (needs >= 2 of each)."""
        if self.num_reference < 2 or self.num_samples < 2:
            raise ValueError(
                f"fid: need >= 2 reference and sample features, have {self.num_reference} and {self.num_samples}"
            )
        return float(self.metric.compute())


def _moments(total: torch.Tensor, outer_total: torch.Tensor, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError(f"fid: statistics need at least 2 features, have {n}")
    mu = total / n
    sigma = (outer_total - n * torch.outer(mu, mu)) / (n - 1)
    return mu.numpy(), sigma.numpy()


@dataclass
class ReferenceStats:
    """Gaussian statistics of a feature set (and optionally some of the features).

    Attributes:
        mu: mean ``(D,)`` float64.
        sigma: covariance ``(D, D)`` float64 (unbiased).
        num_samples: how many features went in.
        feature_net: name of the feature network (e.g. ``inception-2048``).
        features: optional ``(M, D)`` float32 subset for precision/recall.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int
    feature_net: str = ""
    features: np.ndarray | None = None

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` with keys ``mu``, ``sigma``, ``num_samples``, ``feature_net`` [, ``features``]."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "mu": self.mu,
            "sigma": self.sigma,
            "num_samples": np.int64(self.num_samples),
            "feature_net": np.str_(self.feature_net),
        }
        if self.features is not None:
            arrays["features"] = self.features
        np.savez(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceStats:
        """Read an ``.npz`` with at least ``mu`` and ``sigma`` (pytorch-fid files work too)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: reference statistics file not found (make one with scripts/fid_stats.py)")
        with np.load(path) as data:
            missing = {"mu", "sigma"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: reference statistics lack {sorted(missing)}")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
                raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
            num = int(data["num_samples"]) if "num_samples" in data.files else 50_000
            name = str(data["feature_net"]) if "feature_net" in data.files else ""
            features = data["features"] if "features" in data.files else None
        return cls(mu, sigma, num, name, features)


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` in [-1, 1] -> ``(B, 3, H, W)`` float holding 8-bit values 0..255.

    Pixels are quantised to 8 bits (as if the samples were saved as PNG) and grey images are
    repeated to three channels. The resolution is kept: both Inception formats resize to
    299 x 299 inside the network, as the published FID code does.
    """
    x = ((images.float() + 1) * 127.5).round().clamp(0, 255)
    x = x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x
    if x.shape[1] != 3:
        raise ValueError(f"fid: Inception needs 1 or 3 channels, got {x.shape[1]}")
    return x


class InceptionFeatures:
    """Inception pool features (2048-d) of images in [-1, 1], from a local weights file.

    Args:
        weights_path: a TorchScript Inception (``inception-2015-12-05.pt``, called with
            ``return_features=True`` on ``(B, 3, H, W)`` 0..255 input) or torch-fidelity's ``.pth``
            state dict (needs torch-fidelity installed).
        device: where to run the network.
        batch_size: images per forward.
    """

    def __init__(self, weights_path: str | Path, device: str | torch.device = "cpu", batch_size: int = 100):
        self.device, self.batch_size = torch.device(device), batch_size
        self.net, self._call = load_inception(weights_path, self.device)
        self.name = "inception-2048"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` in [-1, 1] -> ``(B, 2048)`` float64 on CPU."""
        out = []
        for i in range(0, len(images), self.batch_size):
            x = to_inception_input(images[i : i + self.batch_size].to(self.device))
            out.append(self._call(x).double().cpu())
        return torch.cat(out)


def check_fid_files(inception_weights: str | Path | None, inception_reference: str | Path | None = None) -> None:
    """Fail fast, before any training, when a configured Inception or statistics file is unusable.

    The Inception file is loaded and run on one small image, and the statistics file is read,
    so a missing, truncated or foreign file is refused here and not after training.

    Raises:
        FileNotFoundError: one line naming the file (``eval.inception_weights`` / ``eval.inception_reference``).
        ValueError: a reference file without Inception weights to score samples with, or a file
            that is not an Inception network / statistics file (one line naming it).
    """
    if inception_reference and not inception_weights:
        raise ValueError(
            f"eval.inception_reference={inception_reference} needs eval.inception_weights (a local "
            "Inception file) to score the samples"
        )
    if inception_weights and not Path(inception_weights).is_file():
        raise FileNotFoundError(
            f"{inception_weights}: Inception weights file not found (eval.inception_weights; nothing is downloaded)"
        )
    if inception_reference and not Path(inception_reference).is_file():
        raise FileNotFoundError(
            f"{inception_reference}: reference statistics file not found "
            "(eval.inception_reference; make one with scripts/fid_stats.py)"
        )
    if not inception_weights:
        return
    inception = InceptionFeatures(inception_weights, batch_size=1)  # a file torch cannot load: one ValueError line
    try:
        features = inception(torch.zeros(1, 3, 16, 16))
    except Exception as err:  # a TorchScript file of another network: any error of its forward
        raise ValueError(f"{inception_weights}: not an Inception network ({_first_line(err)})") from None
    if features.ndim != 2 or len(features) != 1:
        raise ValueError(f"{inception_weights}: not an Inception network (features of shape {tuple(features.shape)})")
    if inception_reference:
        try:
            stats = ReferenceStats.load(inception_reference)
        except ValueError:
            raise
        except Exception as err:  # numpy's zip / pickle / OS errors of a corrupt .npz
            raise ValueError(f"{inception_reference}: not a reference statistics file ({_first_line(err)})") from None
        if stats.mu.shape[0] != features.shape[1]:
            raise ValueError(
                f"{inception_reference}: statistics of {stats.mu.shape[0]}-d features, but "
                f"{inception_weights} gives {features.shape[1]}-d features"
            )


NATIVE_SIDE = {"digits": 8, "mnist": 28}
"""Image side of the built-in data sets before ``data.pad_to`` (folders: ``data.size``)."""


def large_image_note(data_name: str, size: int, pad_to: int | None, eval_cfg) -> str | None:
    """The one start-up line for images too large for the feature CNN when no Inception file is set.

    Args:
        data_name, size, pad_to: ``data.name``, ``data.size``, ``data.pad_to``.
        eval_cfg: ``eval.*`` (``feature_cnn_max_side``, ``inception_weights``).

    Returns:
        ``None`` when there is nothing to say (small images, or Inception weights given).
    """
    side = pad_to or NATIVE_SIDE.get(data_name, size)
    if side <= eval_cfg.feature_cnn_max_side or eval_cfg.inception_weights:
        return None
    return (
        f"eval: no FID for this run: {side}x{side} images are scored by the Inception FID only (no feature CNN "
        f"above eval.feature_cnn_max_side={eval_cfg.feature_cnn_max_side}) and eval.inception_weights is not set "
        "(give a local inception-2015-12-05.pt; nothing is downloaded)"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_inception(weights_path: str | Path, device: torch.device) -> tuple[nn.Module, FeatureFn]:
    """The Inception network in ``weights_path`` and how to call it for pool features.

    Raises:
        FileNotFoundError: one line naming the missing file.
        ImportError: a ``.pth`` file without torch-fidelity installed.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: Inception weights file not found (nothing is downloaded; give a local inception-2015-12-05.pt)"
        )
    if path.suffix == ".pth":  # torch-fidelity's format, through torchmetrics' wrapper
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            net = (
                NoTrainInceptionV3(
                    name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
                )
                .to(device)
                .eval()
            )
        except (ImportError, ModuleNotFoundError, TypeError) as err:
            raise ImportError(
                f"{path}: torch-fidelity's .pth format needs torch-fidelity installed ({err}); "
                "or give the TorchScript inception-2015-12-05.pt instead"
            ) from None
        return net, lambda x: net(x.round().to(torch.uint8))
    with warnings.catch_warnings():  # the published Inception files are TorchScript; jit.load warns in torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:  # torch raises RuntimeError, ValueError or pickle errors for foreign files
            raise ValueError(f"{path}: not a TorchScript Inception file ({_first_line(err)})") from None
    return net, lambda x: net(x, return_features=True)


def iterate_batches(
    data: Dataset | torch.Tensor, batch_size: int, max_items: int | None = None, num_workers: int = 0
) -> Iterable[tuple[torch.Tensor, torch.Tensor | None]]:
    """Batches ``(images (B, C, H, W), labels (B,) or None)`` of an image tensor or a data set.

    A data set yields ``(image, label)`` items; a ``TensorDataset`` is sliced directly.
    """
    n = len(data) if max_items is None else min(max_items, len(data))
    tensors = (data,) if isinstance(data, torch.Tensor) else data.tensors if isinstance(data, TensorDataset) else None
    if tensors is not None:
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield tensors[0][i:j], (tensors[1][i:j] if len(tensors) > 1 else None)
        return
    subset = Subset(data, range(n)) if n < len(data) else data
    for batch in DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers):
        yield (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)


def iterate_images(
    data: Dataset | torch.Tensor, batch_size: int, max_items: int | None = None, num_workers: int = 0
) -> Iterable[torch.Tensor]:
    """Image batches ``(B, C, H, W)`` of an image tensor or a data set of ``(image, label)`` items."""
    for images, _ in iterate_batches(data, batch_size, max_items, num_workers):
        yield images


def reference_stats(
    data: Dataset | torch.Tensor,
    features: FeatureFn,
    name: str = "",
    batch_size: int = 256,
    keep_features: int = 0,
    max_items: int | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> ReferenceStats:
    """Streamed statistics of a data set's features.

    Args:
        data: images ``(N, C, H, W)`` or a data set of ``(image, label)`` items, in [-1, 1].
        features: the feature network (images -> ``(B, D)``).
        name: feature-network name stored with the statistics.
        batch_size: images per batch.
        keep_features: also keep the first this many features (float32) for precision/recall.
        max_items: use only the first this many images.
        num_workers: data-loader workers for data sets.
        progress: a progress bar over the images (tqdm).
    """
    from tqdm.auto import tqdm

    scorer, kept, n_kept = FrechetScorer(), [], 0
    total = len(data) if max_items is None else min(max_items, len(data))
    bar = tqdm(total=total, desc=f"features ({name or 'reference'})", unit="img", disable=not progress)
    for images in iterate_images(data, batch_size, max_items, num_workers):
        bar.update(len(images))
        feats = features(images)
        scorer.add_reference(feats)
        if n_kept < keep_features:
            kept.append(feats[: keep_features - n_kept].float())
            n_kept += len(kept[-1])
    bar.close()
    stats = scorer.reference_stats(name)
    stats.features = torch.cat(kept).numpy() if kept else None
    return stats


def save_folder_reference_stats(
    folder: str | Path,
    out: str | Path,
    weights_path: str | Path,
    size: int = 256,
    channels: int = 3,
    batch_size: int = 100,
    keep_features: int = 10_000,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = True,
) -> ReferenceStats:
    """Inception reference statistics of every image under ``folder`` (recursively), saved to ``out``.

    Images are resized (short side) to ``size`` and centre-cropped as in training
    (:func:`kflow_image.data.load_image_file`).
    """
    from kflow_image.data import IMAGE_SUFFIXES, ImageFolderDataset

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"{root}: found {len(files)} images with suffixes {IMAGE_SUFFIXES}; need at least 2")
    inception = InceptionFeatures(weights_path, device=device, batch_size=batch_size)
    dataset = ImageFolderDataset(files, [0] * len(files), size, channels)
    stats = reference_stats(
        dataset, inception, inception.name, batch_size, keep_features, num_workers=num_workers, progress=progress
    )
    stats.save(out)
    return stats
