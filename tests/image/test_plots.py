"""Grids carry row/column labels in margins without touching the tiles."""

import numpy as np
import torch
from PIL import Image

from kflow_image.plots import save_grid, save_sample_array


def test_labelled_grid_keeps_the_tiles(tmp_path):
    images = torch.linspace(-1, 1, 6 * 16).reshape(6, 1, 4, 4)
    plain = np.asarray(Image.open(save_grid(images, tmp_path / "plain.png", nrow=3, upscale=2)))
    labelled = np.asarray(
        Image.open(
            save_grid(
                images,
                tmp_path / "labelled.png",
                nrow=3,
                upscale=2,
                row_labels=["class 0", "class 1"],
                col_labels=["k=0", "k=1", "k=2"],
                title="k",
            )
        )
    )
    top = labelled.shape[0] - plain.shape[0]
    left = labelled.shape[1] - plain.shape[1]
    assert top == 42 and left > 0  # a title line and two staggered column-label lines (wider than 10-px tiles)
    assert np.array_equal(labelled[top:, left:], plain)
    assert (labelled[:top] < 255).any() and (labelled[top:, :left] < 255).any()  # text was drawn
    long_title = "a title much wider than the three tiny tiles"
    titled = Image.open(save_grid(images, tmp_path / "titled.png", nrow=3, upscale=2, title=long_title))
    assert titled.width > 8 * len(long_title) // 2 > plain.shape[1]  # the canvas widens: the title is not cut


def test_grid_of_many_large_images_is_capped_and_says_so(tmp_path):
    """100 images of 256² at upscale 4 would be a 10k-pixel PNG: the side stays within max_side."""
    images = torch.rand(100, 3, 256, 256) * 2 - 1
    out = save_grid(images, tmp_path / "big.png", nrow=10, upscale=4, row_labels=[f"class {r}" for r in range(10)])
    with Image.open(out) as png:
        width, height = png.size
    assert width <= 2048 + 60 and height <= 2048 + 14  # tiles <= 2048, plus the label margins
    assert height > 1500  # the first 7 x 7 tiles at scale 1, not a thumbnail
    tiles = np.asarray(Image.open(out))[14:, width - (7 * 257 + 1) :]  # below the title, right of the labels
    first = ((images[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(tiles[1:257, 1:257], first)  # tiles are drawn at scale 1, unresampled
    small = save_grid(images[:4, :, :8, :8], tmp_path / "small.png", nrow=2, upscale=4)
    assert Image.open(small).size == (2 * 9 * 4 + 4, 2 * 9 * 4 + 4)  # small grids keep their upscale
    arrays = np.load(save_sample_array(images, torch.arange(100) % 10, tmp_path / "samples.npz"))
    assert arrays["images"].shape == (100, 256, 256, 3) and arrays["images"].dtype == np.uint8
    assert np.array_equal(arrays["labels"], np.arange(100) % 10)
