"""The shipped assertions pass on good transforms and catch broken ones."""

import pytest
import torch

from kflow.testing import (
    assert_band_index_covers,
    assert_equivariant,
    assert_orthonormal,
    assert_round_trip,
    random_rotation,
)
from kflow.transforms import FourierTransform


class _Scaled(FourierTransform):
    """Invertible but not orthonormal: coefficients scaled by 2."""

    def forward(self, x, context=None):
        return 2.0 * super().forward(x)

    def inverse(self, coeffs, context=None):
        return super().forward(coeffs / 2.0)


class _Lossy(FourierTransform):
    """Inverse drops the last coefficient: not invertible."""

    def inverse(self, coeffs, context=None):
        coeffs = coeffs.clone()
        coeffs[..., -1] = 0
        return super().forward(coeffs)


class _EmptyBand(FourierTransform):
    """Claims 4 bands while only 3 are used."""

    num_bands = 4

    def __init__(self):
        super().__init__((8,), 3)
        self.num_bands = 4


def _x():
    return torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def test_assertions_pass_on_a_correct_transform():
    transform = FourierTransform((8,), 3)
    assert_round_trip(transform, _x())
    assert_orthonormal(transform, _x())
    assert_orthonormal(transform, (2, 8))  # a shape: random float64 data
    assert_band_index_covers(transform, coeff_shape=(8,))


def test_round_trip_catches_a_lossy_inverse():
    with pytest.raises(AssertionError, match="_Lossy: inverse\\(forward\\(x\\)\\) != x"):
        assert_round_trip(_Lossy((8,), 3), _x())


def test_orthonormal_catches_a_scaled_transform():
    transform = _Scaled((8,), 3)
    assert_round_trip(transform, _x())  # invertible ...
    with pytest.raises(AssertionError, match="_Scaled does not preserve inner products"):
        assert_orthonormal(transform, _x())  # ... but not orthonormal


def test_band_cover_catches_an_empty_band():
    with pytest.raises(AssertionError, match=r"bands \[3\] are empty"):
        assert_band_index_covers(_EmptyBand())
    with pytest.raises(AssertionError, match="does not broadcast"):
        assert_band_index_covers(FourierTransform((8,), 3), coeff_shape=(9,))


def test_random_rotation_is_proper_and_reproducible():
    rotation = random_rotation(dtype=torch.float32, device="cpu", generator=torch.Generator().manual_seed(5))
    assert rotation.shape == (3, 3) and rotation.dtype == torch.float32
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(3), atol=1e-6, rtol=0)
    assert abs(float(torch.det(rotation)) - 1.0) < 1e-6
    again = random_rotation(dtype=torch.float32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(rotation, again)
    dets = [float(torch.det(random_rotation(generator=torch.Generator().manual_seed(s)))) for s in range(20)]
    assert all(abs(d - 1.0) < 1e-12 for d in dets)


def test_assert_equivariant_accepts_equivariant_and_rejects_others():
    rotation = random_rotation(generator=torch.Generator().manual_seed(2))
    points = torch.randn(5, 3, dtype=torch.float64)
    weights = torch.rand(5, dtype=torch.float64)

    def weighted_centroid(p, w):
        return (w[:, None] * p).sum(0) / w.sum()

    assert_equivariant(
        weighted_centroid, (points, weights), lambda a: (a[0] @ rotation.T, a[1]), lambda y: y @ rotation.T
    )
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_equivariant(lambda p: p[:, 0], points, lambda p: p @ rotation.T, lambda y: y)
