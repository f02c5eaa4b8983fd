"""On-disk latent store and streaming fits over it (never a stacked copy of the data set).

:func:`encode_to_store` encodes a data set once (optionally also its horizontal flips) into a
folder holding ``latents.npy`` (float32 ``(N, c, h, w)``, written and read as a numpy
memory map), ``labels.npy`` and ``meta.json``. :class:`LatentDataset` reads it back lazily, so
training runs from the store at any size. :func:`cached_latents` reuses a complete store
whose codec fingerprint and data settings match.

The fits a run needs stream over batches:

* :class:`SecondMoments` accumulates ``sum x`` and ``sum x x^T`` in float64 (PCA basis via
  :meth:`kflow.transforms.pca.PCATransform.from_moments`);
* :func:`streaming_coefficient_energy` / :func:`streaming_band_energy` give the per-coefficient
  and per-band energies used by ``equal_energy`` grouping and energy-aware step allocation.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from kflow.transforms.base import KTransform
from kflow_image.codecs import LatentCodec

STORE_VERSION = 1
BatchSource = Callable[[], Iterable[torch.Tensor]]


class LatentDataset(Dataset):
    """Items ``(latent (c, h, w) float32, label long)`` read from a store folder (memory-mapped).

    Args:
        folder: a folder written by :func:`encode_to_store`.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder}: not a latent store (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if not self.meta.get("complete"):
            raise ValueError(f"{self.folder}: latent store is incomplete (encoding was interrupted); delete it")
        self.latents = np.load(self.folder / "latents.npy", mmap_mode="r")
        self.labels = np.load(self.folder / "labels.npy")
        self.latent_shape = tuple(int(s) for s in self.latents.shape[1:])

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.latents[index])), torch.tensor(int(self.labels[index]))

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Many items in one memory-map read (used by ``DataLoader``)."""
        order = np.asarray(indices)
        latents = torch.from_numpy(np.array(self.latents[np.sort(order)]))
        rank = np.argsort(np.argsort(order))
        labels = self.labels[order]
        return [(latents[r], torch.tensor(int(label))) for r, label in zip(rank, labels)]

    def batches(self, batch_size: int = 1024) -> Iterator[torch.Tensor]:
        """Contiguous latent batches ``(b, c, h, w)`` (float32), in store order."""
        for start in range(0, len(self), batch_size):
            yield torch.from_numpy(np.array(self.latents[start : start + batch_size]))


@torch.no_grad()
def encode_to_store(
    codec: LatentCodec,
    dataset: Dataset,
    folder: str | Path,
    flip: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    meta: dict | None = None,
    num_workers: int = 0,
) -> LatentDataset:
    """Encode every image of ``dataset`` (and, with ``flip``, its mirror image) into ``folder``.

    Rows ``0..N-1`` hold the images in data-set order; with ``flip`` rows ``N..2N-1`` hold the
    horizontally flipped images in the same order. ``meta.json`` is marked complete last, so
    an interrupted encoding is never mistaken for a store.

    Args:
        codec: the codec (on ``device``).
        dataset: items ``(image (C, H, W), label)``.
        folder: output folder (created).
        flip: also store the flipped images.
        batch_size: images encoded at once.
        device: where to encode.
        meta: extra entries for ``meta.json`` (e.g. the codec fingerprint).
        num_workers: DataLoader workers reading the images.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    image_shape = tuple(int(s) for s in dataset[0][0].shape)
    latent_shape = tuple(codec.latent_shape(image_shape))
    rows = 2 * n if flip else n
    info = {
        "version": STORE_VERSION,
        "count": rows,
        "images": n,
        "flip": flip,
        "image_shape": list(image_shape),
        "latent_shape": list(latent_shape),
        "complete": False,
        **(meta or {}),
    }
    (folder / "meta.json").write_text(json.dumps(info, indent=2))
    latents = np.lib.format.open_memmap(
        folder / "latents.npy", mode="w+", dtype=np.float32, shape=(rows, *latent_shape)
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    labels = _encode_rows(codec, loader, latents, flip, device)
    latents.flush()
    del latents
    np.save(folder / "labels.npy", labels)
    info["complete"] = True
    (folder / "meta.json").write_text(json.dumps(info, indent=2))
    return LatentDataset(folder)


def _encode_rows(codec: LatentCodec, loader: DataLoader, latents: np.ndarray, flip: bool, device) -> np.ndarray:
    """Fill ``latents`` ``(rows, *latent_shape)``: rows ``0..N-1`` the images, then (``flip``) their mirrors.

    Returns:
        The labels ``(rows,)`` in the same row order.
    """
    n = len(loader.dataset)
    labels = np.zeros(len(latents), dtype=np.int64)
    start = 0
    for images, batch_labels in tqdm(loader, desc=f"encoding {n} images", unit="batch", leave=False):
        images = images.to(device)
        stop = start + len(images)
        latents[start:stop] = codec.encode(images).float().cpu().numpy()
        labels[start:stop] = batch_labels.numpy()
        if flip:
            latents[n + start : n + stop] = codec.encode(images.flip(-1)).float().cpu().numpy()
            labels[n + start : n + stop] = batch_labels.numpy()
        start = stop
    return labels


def cached_latents(
    codec: LatentCodec,
    dataset: Dataset,
    cache_dir: str | Path,
    key: dict[str, Any],
    flip: bool = False,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    num_workers: int = 0,
) -> LatentDataset:
    """A complete store for ``(codec, dataset, flip)`` under ``cache_dir``, encoding only if needed.

    Args:
        codec: the codec.
        dataset: the images.
        cache_dir: parent folder of the stores.
        key: what identifies the data set (e.g. the data config and split); with the codec's
            fingerprint and ``flip`` it names the store folder.
        flip: with flipped copies.
        batch_size: encoding batch.
        device: where to encode.
        log: called with one line when a store is written or reused.
        num_workers: DataLoader workers reading the images while encoding.
    """
    identity = {"codec": codec.fingerprint(), "codec_name": codec.name, "flip": flip, "data": key, "size": len(dataset)}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / f"latents-{codec.name}-{digest}"
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("complete") and meta.get("identity") == json.loads(json.dumps(identity, default=str)):
            log(f"latents: reusing {folder} ({meta['count']} x {meta['latent_shape']})")
            return LatentDataset(folder)
    log(f"latents: encoding {len(dataset)} images{' (+ flips)' if flip else ''} into {folder}")
    return encode_to_store(
        codec,
        dataset,
        folder,
        flip,
        batch_size,
        device,
        meta={"identity": json.loads(json.dumps(identity, default=str))},
        num_workers=num_workers,
    )


def batch_source(data: torch.Tensor | Dataset | LatentDataset, batch_size: int = 1024) -> BatchSource:
    """A re-iterable source of ``(b, *shape)`` batches over a tensor, a store or any data set."""
    if isinstance(data, torch.Tensor):
        return lambda: (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    if isinstance(data, LatentDataset):
        return lambda: data.batches(batch_size)
    if isinstance(data, TensorDataset):
        images = data.tensors[0]
        return lambda: (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    return lambda: (items[0] for items in DataLoader(data, batch_size=batch_size))


class SecondMoments:
    """Streaming ``count``, ``sum x`` ``(D,)`` and ``sum x x^T`` ``(D, D)`` in float64.

    Args:
        dim: D, the flattened sample size.
        device: where to accumulate.
    """

    def __init__(self, dim: int, device: str | torch.device = "cpu"):
        self.count = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, batch: torch.Tensor) -> None:
        """Add samples ``(b, *shape)`` with ``prod(shape) == D``."""
        flat = batch.reshape(batch.shape[0], -1).to(self.sum.device, torch.float64)
        self.count += flat.shape[0]
        self.sum += flat.sum(0)
        self.outer += flat.T @ flat

    @classmethod
    def of(cls, source: BatchSource, dim: int, device: str | torch.device = "cpu") -> SecondMoments:
        """Moments of every batch of ``source``."""
        moments = cls(dim, device)
        for batch in source():
            moments.update(batch)
        return moments


def streaming_coefficient_energy(
    transform: KTransform, source: BatchSource, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Mean squared coefficient ``coeff_shape`` over all batches (float64; equals
    :func:`kflow.transforms.coefficient_energy` on the stacked data)."""
    total, count = None, 0
    with torch.no_grad():
        for batch in source():
            sq = transform.forward(batch.to(device, torch.float64)).pow(2).sum(0)
            total = sq if total is None else total + sq
            count += batch.shape[0]
    if total is None:
        raise ValueError("streaming_coefficient_energy: no data")
    return total / count


def streaming_band_energy(
    transform: KTransform, source: BatchSource, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Energy per band ``(K,)`` over all batches (equals :func:`kflow.transforms.band_energy`)."""
    energy = streaming_coefficient_energy(transform, source, device)
    bands = transform.band_index.to(energy.device).expand_as(energy).reshape(-1)
    out = torch.zeros(transform.num_bands, dtype=energy.dtype, device=energy.device)
    return out.index_add_(0, bands, energy.reshape(-1))


def dataset_dim(shape: Iterable[int]) -> int:
    """``prod(shape)``."""
    return math.prod(int(s) for s in shape)
