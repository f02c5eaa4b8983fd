"""Image data sets: digits (embedded), the shared MNIST split, image folders."""

from pathlib import Path

import numpy as np
import pytest
import torch

from kflow_image.data import load_dataset, load_digits, load_folder, load_mnist, pad_images, stack_dataset

SHARED_MNIST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"


def test_digits_split_is_fixed_disjoint_and_scaled():
    splits = load_digits()
    assert (len(splits.train), len(splits.reference)) == (1297, 500)
    assert splits.image_shape == (1, 8, 8) and splits.num_classes == 10
    train, train_labels = stack_dataset(splits.train)
    ref, _ = stack_dataset(splits.reference)
    assert train.min() == -1.0 and train.max() == 1.0
    assert set(train_labels.tolist()) == set(range(10))
    flat_train = {tuple(row) for row in train.flatten(1).tolist()}
    overlap = sum(tuple(row) in flat_train for row in ref.flatten(1).tolist())
    assert overlap < 10  # a few digits are pixel-identical duplicates in the source data
    again, _ = stack_dataset(load_digits().train)
    assert torch.equal(train, again)


def test_pad_images_uses_background():
    padded = pad_images(torch.ones(2, 1, 28, 28), 32)
    assert padded.shape == (2, 1, 32, 32)
    assert padded[..., :2, :].eq(-1).all() and padded[..., 2:30, 2:30].eq(1).all()
    with pytest.raises(ValueError, match="smaller"):
        pad_images(torch.ones(1, 1, 8, 8), 4)


@pytest.mark.skipif(not SHARED_MNIST.exists(), reason="../shared/data/mnist not present")
def test_mnist_halves_follow_the_readme():
    splits = load_mnist(SHARED_MNIST, pad_to=32)
    assert (len(splits.train), len(splits.reference)) == (5000, 5000)
    assert splits.image_shape == (1, 32, 32)
    _, train_labels = stack_dataset(splits.train)
    _, ref_labels = stack_dataset(splits.reference)
    # README: the first ten labels are 7 2 1 0 4 1 4 9 5 9 (even -> train, odd -> reference)
    assert train_labels[:5].tolist() == [7, 1, 4, 4, 5]
    assert ref_labels[:5].tolist() == [2, 0, 1, 9, 9]
    counts = torch.bincount(torch.cat([train_labels, ref_labels]), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_missing_folder_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist(tmp_path)


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_with_class_subfolders_resizes_and_crops(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        for i in range(5):
            write_png(tmp_path / cls / f"{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    splits = load_dataset("folder", root=tmp_path, size=16, channels=3, reference_fraction=0.2)
    assert splits.num_classes == 2 and splits.image_shape == (3, 16, 16)
    assert len(splits.train) == 8 and len(splits.reference) == 2
    images, labels = stack_dataset(splits.train)
    assert images.shape == (8, 3, 16, 16) and images.min() >= -1 and images.max() <= 1
    assert set(labels.tolist()) <= {0, 1}


def test_folder_without_classes_and_grey(tmp_path):
    white = np.full((8, 8), 255, dtype=np.uint8)
    for i in range(3):
        write_png(tmp_path / f"{i}.png", white)
    splits = load_folder(tmp_path, size=4, channels=1)
    assert splits.num_classes == 0
    image, label = splits.train[0]
    assert image.shape == (1, 4, 4) and torch.allclose(image, torch.ones(1, 4, 4)) and label.item() == 0


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="need at least 2"):
        load_folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"not an image")
    (tmp_path / "b.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="a.png|b.png"):
        load_folder(tmp_path, reference_fraction=0.5).train[0]
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("cifar")


def test_folder_reference_fraction_zero_trains_on_everything(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(6):
        write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    splits = load_folder(tmp_path, size=8, reference_fraction=0.0)
    assert len(splits.train) == 6 and splits.reference is splits.train
    with pytest.raises(ValueError, match="reference_fraction"):
        load_folder(tmp_path, size=8, reference_fraction=1.0)
