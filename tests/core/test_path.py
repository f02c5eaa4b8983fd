"""KAmplitudePath: endpoints, band structure of the velocity, finite differences, K=1 == FM."""
import pytest
import torch

from kflow.path import BUMPS, KAmplitudePath
from kflow.transforms.matrix import IdentityTransform, MatrixTransform

DTYPE = torch.float64


def random_matrix_transform(dim=12, num_bands=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=DTYPE))
    bands = torch.arange(dim) * num_bands // dim
    return MatrixTransform(q, bands, (3, dim // 3))


def pair(batch=5, dim=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, dim // 3, generator=g, dtype=DTYPE),
            torch.randn(batch, 3, dim // 3, generator=g, dtype=DTYPE))


@pytest.mark.parametrize("bump", sorted(BUMPS))
@pytest.mark.parametrize("reverse", [False, True])
def test_endpoints(bump, reverse):
    path = KAmplitudePath(random_matrix_transform(), bump=bump, reverse=reverse)
    x0, x1 = pair()
    torch.testing.assert_close(path.sample(x0, x1, torch.zeros(5, dtype=DTYPE)).x_k, x0, atol=1e-12, rtol=0)
    torch.testing.assert_close(path.sample(x0, x1, torch.full((5,), 3.0, dtype=DTYPE)).x_k, x1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("bump", sorted(BUMPS))
@pytest.mark.parametrize("reverse", [False, True])
def test_velocity_is_central_difference(bump, reverse):
    path = KAmplitudePath(random_matrix_transform(), bump=bump, reverse=reverse)
    x0, x1 = pair()
    k = torch.tensor([0.13, 0.5, 1.27, 1.91, 2.6], dtype=DTYPE)
    h = 1e-6
    fd = (path.sample(x0, x1, k + h).x_k - path.sample(x0, x1, k - h).x_k) / (2 * h)
    torch.testing.assert_close(path.sample(x0, x1, k).dx_k, fd, atol=1e-7, rtol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_velocity_lives_on_the_current_band(reverse):
    transform = random_matrix_transform()
    path = KAmplitudePath(transform, bump="cosine", reverse=reverse)
    x0, x1 = pair()
    k = torch.tensor([0.2, 0.7, 1.5, 2.1, 2.99], dtype=DTYPE)
    sample = path.sample(x0, x1, k)
    coeffs = transform.forward(sample.dx_k)
    band = transform.band_index.expand_as(coeffs)
    current = sample.band[:, None].expand_as(coeffs)
    assert coeffs[band != current].abs().max() < 1e-12
    assert torch.all(coeffs[band == current].abs() > 1e-6)
    expected_band = (2 - k.floor().long()) if reverse else k.floor().long()
    assert torch.equal(sample.band, expected_band)


def test_bands_below_are_target_and_above_are_source():
    transform = random_matrix_transform()
    path = KAmplitudePath(transform, bump="smoothstep")
    x0, x1 = pair()
    k = torch.full((5,), 1.4, dtype=DTYPE)
    c = transform.forward(path.sample(x0, x1, k).x_k)
    c0, c1 = transform.forward(x0), transform.forward(x1)
    band = transform.band_index
    torch.testing.assert_close(c[:, band == 0], c1[:, band == 0])
    torch.testing.assert_close(c[:, band == 2], c0[:, band == 2])
    mu = 3 * 0.4**2 - 2 * 0.4**3
    torch.testing.assert_close(c[:, band == 1], c0[:, band == 1] + mu * (c1 - c0)[:, band == 1])


def test_one_band_linear_bump_is_linear_flow_matching():
    path = KAmplitudePath(IdentityTransform((3, 4)), bump="linear")
    x0, x1 = pair()
    k = torch.rand(5, dtype=DTYPE)
    sample = path.sample(x0, x1, k)
    t = k[:, None, None]
    torch.testing.assert_close(sample.x_k, (1 - t) * x0 + t * x1, atol=1e-14, rtol=0)
    torch.testing.assert_close(sample.dx_k, x1 - x0, atol=1e-14, rtol=0)
    one_band_matrix = MatrixTransform(random_matrix_transform().basis, torch.zeros(12, dtype=torch.long), (3, 4))
    other = KAmplitudePath(one_band_matrix).sample(x0, x1, k)
    torch.testing.assert_close(other.x_k, sample.x_k, atol=1e-12, rtol=0)
    torch.testing.assert_close(other.dx_k, sample.dx_k, atol=1e-12, rtol=0)


def test_scalar_k_and_float32():
    transform = random_matrix_transform()
    path = KAmplitudePath(transform)
    x0, x1 = (t.float() for t in pair())
    sample = path.sample(x0, x1, 1.5)
    assert sample.x_k.dtype == torch.float32 and sample.k.shape == (5,)


def test_unknown_bump_is_rejected():
    with pytest.raises(ValueError, match="unknown bump"):
        KAmplitudePath(IdentityTransform(), bump="sigmoid")
