"""Image data sets: scikit-learn digits (embedded), the shared MNIST test split, image folders.

Every data set yields ``(image, label)`` with ``image`` a float tensor ``(C, H, W)`` scaled to
[-1, 1] and ``label`` a long scalar (0 for unlabelled folders), and comes split into a fixed
``train`` part and a held-out ``reference`` part used by the metrics.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SHARED_MNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


@dataclass
class ImageSplits:
    """A data set split into training and held-out reference images.

    Attributes:
        train: items ``(image (C, H, W) in [-1, 1], label)``.
        reference: held-out items of the same form (for FD/KID/precision/recall).
        num_classes: number of labels (0 = unlabelled).
        image_shape: ``(C, H, W)``.
        name: data-set name used in run folders and metric names.
    """

    train: Dataset
    reference: Dataset
    num_classes: int
    image_shape: tuple[int, int, int]
    name: str


def to_unit_range(pixels: torch.Tensor, max_value: float) -> torch.Tensor:
    """Map pixel values in ``[0, max_value]`` to [-1, 1] (float32, same shape)."""
    return pixels.float() / max_value * 2.0 - 1.0


def pad_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Pad ``(N, C, H, W)`` images symmetrically with background (-1) to ``size x size``."""
    if size is None or images.shape[-1] == size and images.shape[-2] == size:
        return images
    dh, dw = size - images.shape[-2], size - images.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"data: pad_to={size} is smaller than the images ({tuple(images.shape[-2:])})")
    return F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=-1.0)


def stack_dataset(dataset: Dataset, max_items: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All (or the first ``max_items``) items of a data set as ``(images (N, C, H, W), labels (N,))``."""
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        return images[:max_items], labels[:max_items]
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    items = [dataset[i] for i in range(n)]
    return torch.stack([im for im, _ in items]), torch.stack([torch.as_tensor(lb) for _, lb in items])


def load_digits(reference_size: int = 500, pad_to: int | None = None, seed: int = 0) -> ImageSplits:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes; shipped inside the sklearn wheel).

    Args:
        reference_size: images held out as the metric reference (fixed permutation by ``seed``).
        pad_to: optional square size to pad to (e.g. 16 for deep wavelet stacks).
        seed: seed of the fixed train/reference permutation.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = pad_images(to_unit_range(torch.from_numpy(bunch.images).unsqueeze(1), 16.0), pad_to)
    labels = torch.from_numpy(bunch.target).long()
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(labels)))
    ref, train = order[:reference_size], order[reference_size:]
    return ImageSplits(
        TensorDataset(images[train], labels[train]),
        TensorDataset(images[ref], labels[ref]),
        10,
        tuple(images.shape[1:]),
        "digits",
    )


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzip IDX file (MNIST format) into a uint8 array; errors name the file."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise ValueError(f"{path}: IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {payload.size} bytes of data, header says {dims}")
    return payload.reshape(dims)


def load_mnist(root: str | Path = SHARED_MNIST, pad_to: int | None = None) -> ImageSplits:
    """The 10,000-image MNIST test split, halved: even indices train, odd indices reference.

    Args:
        root: folder with ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``.
        pad_to: optional square size (32 makes 28x28 digits fit dyadic wavelets and patch 4/8).
    """
    root = Path(root)
    images_path, labels_path = root / "t10k-images-idx3-ubyte.gz", root / "t10k-labels-idx1-ubyte.gz"
    for path in (images_path, labels_path):
        if not path.exists():
            raise FileNotFoundError(f"{path}: MNIST file not found (see shared/data/mnist/README.md)")
    images = to_unit_range(torch.from_numpy(read_idx(images_path, 0x803).copy()).unsqueeze(1), 255.0)
    labels = torch.from_numpy(read_idx(labels_path, 0x801).astype(np.int64))
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} images but {len(labels)} labels")
    images = pad_images(images, pad_to)
    return ImageSplits(
        TensorDataset(images[0::2], labels[0::2]),
        TensorDataset(images[1::2], labels[1::2]),
        10,
        tuple(images.shape[1:]),
        "mnist",
    )


def load_image_file(path: Path, size: int, channels: int) -> torch.Tensor:
    """Load one image, resize its short side to ``size``, centre-crop, scale to [-1, 1].

    Returns:
        Shape ``(channels, size, size)``.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except OSError as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
    return to_unit_range(tensor, 255.0)


class ImageFolderDataset(Dataset):
    """Images read lazily from files (PNG/JPEG/...).

    Args:
        files: image paths.
        labels: one label per file.
        size: output side length (short side resized, then centre-cropped).
        channels: 1 (grey) or 3 (RGB).
    """

    def __init__(self, files: list[Path], labels: list[int], size: int, channels: int):
        self.files, self.labels, self.size, self.channels = files, labels, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = load_image_file(self.files[index], self.size, self.channels)
        return image, torch.tensor(self.labels[index], dtype=torch.long)


def load_folder(
    root: str | Path, size: int = 64, channels: int = 3, reference_fraction: float = 0.1, seed: int = 0
) -> ImageSplits:
    """A user's image folder; class sub-folders (if any) become labels, sorted by name.

    Args:
        root: folder of images, or of one sub-folder per class.
        size: output side length.
        channels: 1 or 3.
        reference_fraction: fraction held out for metrics (fixed permutation by ``seed``); 0 trains
            on every image and uses the same images as the metric reference (the protocol of
            FID against the training set; use reference statistics from a file for anything else).
        seed: seed of the split.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    if channels not in (1, 3):
        raise ValueError(f"{root}: channels must be 1 or 3, got {channels}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    files, labels = [], []
    if class_dirs:
        for label, folder in enumerate(class_dirs):
            found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [label] * len(found)
    else:
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        labels = [0] * len(files)
    if len(files) < 2:
        raise ValueError(f"{root}: found {len(files)} images with suffixes {IMAGE_SUFFIXES}; need at least 2")
    if not 0.0 <= reference_fraction < 1.0:
        raise ValueError(f"{root}: reference_fraction must be in [0, 1), got {reference_fraction}")
    order = np.random.RandomState(seed).permutation(len(files))
    if reference_fraction == 0.0:
        everything = ImageFolderDataset([files[i] for i in order], [labels[i] for i in order], size, channels)
        return ImageSplits(everything, everything, len(class_dirs), (channels, size, size), root.name)
    n_ref = max(1, int(round(reference_fraction * len(files))))

    def subset(idx: np.ndarray) -> ImageFolderDataset:
        return ImageFolderDataset([files[i] for i in idx], [labels[i] for i in idx], size, channels)

    return ImageSplits(subset(order[n_ref:]), subset(order[:n_ref]), len(class_dirs), (channels, size, size), root.name)


def load_dataset(name: str, **kwargs) -> ImageSplits:
    """Dispatch by name: ``digits``, ``mnist`` or ``folder`` (which needs ``root=``)."""
    loaders = {"digits": load_digits, "mnist": load_mnist, "folder": load_folder}
    if name not in loaders:
        raise ValueError(f"data: unknown data set {name!r}; choose from {sorted(loaders)}")
    return loaders[name](**kwargs)
