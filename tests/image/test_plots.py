"""Grids carry row/column labels in margins without touching the tiles."""

import numpy as np
import torch
from PIL import Image

from kflow_image.plots import save_grid


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
                title="along k",
            )
        )
    )
    top = labelled.shape[0] - plain.shape[0]
    left = labelled.shape[1] - plain.shape[1]
    assert top == 28 and left > 0  # a title line and a column-label line; a margin as wide as the labels
    assert np.array_equal(labelled[top:, left:], plain)
    assert (labelled[:top] < 255).any() and (labelled[top:, :left] < 255).any()  # text was drawn
