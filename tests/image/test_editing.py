"""Band (PCA) editing moves the chosen bands and keeps every other coefficient exactly."""

import pytest
import torch

from kflow.transforms.pca import PCATransform
from kflow_image.data import load_digits, stack_dataset
from kflow_image.editing import edit_bands, edit_sweep


@pytest.fixture(scope="module")
def pca():
    images, _ = stack_dataset(load_digits().train)
    return PCATransform.fit(images.double(), num_bands=4, centered=False, dtype=torch.float64), images.double()


def test_pca_editing_keeps_untouched_bands_exact(pca):
    transform, images = pca
    x, target = images[:5], images[10:11]
    band = transform.band_index
    for bands in ([0], [1, 3]):
        moved = torch.isin(band, torch.tensor(bands))
        for amount, tgt in ((0.7, None), (-1.0, None), (0.5, target), (1.0, target)):
            edited = edit_bands(x, transform, bands, amount, tgt)
            before, after = transform.forward(x), transform.forward(edited)
            torch.testing.assert_close(after[:, ~moved], before[:, ~moved], atol=1e-12, rtol=0)
            expected = (
                (1 + amount) * before[:, moved]
                if tgt is None
                else before[:, moved] + amount * (transform.forward(tgt)[:, moved] - before[:, moved])
            )
            torch.testing.assert_close(after[:, moved], expected, atol=1e-12, rtol=0)
    swapped = transform.forward(edit_bands(x, transform, [0], 1.0, target))
    torch.testing.assert_close(
        swapped[:, band == 0], transform.forward(target)[:, band == 0].expand(5, -1), atol=1e-12, rtol=0
    )


def test_edit_sweep_layout_and_bad_bands(pca):
    transform, images = pca
    sweep = edit_sweep(images[:3], transform, [2], [-1.0, 0.0, 1.0])
    assert sweep.shape == (3, 3, 1, 8, 8)
    torch.testing.assert_close(sweep[:, 1], images[:3], atol=1e-12, rtol=0)  # amount 0 is the identity
    with pytest.raises(ValueError, match="bands"):
        edit_bands(images[:1], transform, [4], 1.0)
