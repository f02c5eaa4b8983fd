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
    return (
        torch.randn(batch, 3, dim // 3, generator=g, dtype=DTYPE),
        torch.randn(batch, 3, dim // 3, generator=g, dtype=DTYPE),
    )


def in_every_band(bump, reverse):
    """A random-basis 3-band path, its transform, one pair and ``k`` ``(5,)`` inside every band."""
    transform = random_matrix_transform()
    path = KAmplitudePath(transform, bump=bump, reverse=reverse)
    x0, x1 = pair()
    return transform, path, x0, x1, torch.tensor([0.2, 0.7, 1.5, 2.1, 2.99], dtype=DTYPE)


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
    transform, path, x0, x1, k = in_every_band("cosine", reverse)
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


# ----- band mask and projection ----------------------------------------------------------------


def identity_bands_transform():
    """The identity basis on 6 coefficients with bands [0, 0, 1, 1, 2, 2]: masks read off directly."""
    return MatrixTransform(torch.eye(6, dtype=DTYPE), torch.tensor([0, 0, 1, 1, 2, 2]), (6,))


@pytest.mark.parametrize("reverse", [False, True])
def test_band_mask_exact(reverse):
    path = KAmplitudePath(identity_bands_transform(), reverse=reverse)
    k = torch.tensor([0.0, 0.5, 1.0, 2.2, 3.0], dtype=DTYPE)
    mask = path.band_mask(k, like=torch.zeros(5, 6, dtype=DTYPE))
    forward = torch.tensor(
        [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]],
        dtype=DTYPE,
    )
    expected = forward.flip(1) if reverse else forward  # reversed: band 2 moves first
    assert torch.equal(mask, expected)
    assert mask.dtype == DTYPE and mask.shape == (5, 6)


def test_band_mask_without_like_broadcasts():
    path = KAmplitudePath(identity_bands_transform())
    mask = path.band_mask(torch.tensor([1.5]))
    assert torch.equal(mask, torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("reverse", [False, True])
def test_project_to_band_keeps_the_moving_band_exactly(reverse):
    path = KAmplitudePath(identity_bands_transform(), reverse=reverse)
    v = torch.arange(1.0, 7.0, dtype=DTYPE).expand(3, 6)
    projected = path.project_to_band(v, torch.tensor([0.25, 1.75, 2.5], dtype=DTYPE))
    expected = torch.tensor([[1, 2, 0, 0, 0, 0], [0, 0, 3, 4, 0, 0], [0, 0, 0, 0, 5, 6]], dtype=DTYPE)
    assert torch.equal(projected, expected.flip(0) if reverse else expected)


@pytest.mark.parametrize("reverse", [False, True])
def test_project_to_band_leaves_the_path_velocity_unchanged(reverse):
    _, path, x0, x1, k = in_every_band("smoothstep", reverse)
    dx_k = path.sample(x0, x1, k).dx_k
    torch.testing.assert_close(path.project_to_band(dx_k, k), dx_k, atol=1e-12, rtol=0)
    noise = torch.randn(dx_k.shape, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    projected = path.project_to_band(noise, k)
    torch.testing.assert_close(path.project_to_band(projected, k), projected, atol=1e-12, rtol=0)  # idempotent
    # the removed part is orthogonal to the kept part (orthogonal projection)
    inner = ((noise - projected) * projected).flatten(1).sum(1)
    torch.testing.assert_close(inner, torch.zeros(5, dtype=DTYPE), atol=1e-12, rtol=0)


def test_band_mask_per_sample_bases():
    from kflow.transforms import GraphSpectralTransform

    transform = GraphSpectralTransform(num_bands=2)
    points = torch.randn(2, 6, 3, dtype=DTYPE, generator=torch.Generator().manual_seed(0))
    basis = transform.basis(points)
    path = KAmplitudePath(transform)
    like = torch.zeros(2, 6, 3, dtype=DTYPE)
    mask = path.band_mask(torch.tensor([0.5, 1.5], dtype=DTYPE), basis, like=like)
    bands = basis.band_index.expand(2, 6, 3)
    assert torch.equal(mask[0], (bands[0] == 0).to(DTYPE)) and torch.equal(mask[1], (bands[1] == 1).to(DTYPE))
    assert torch.equal(path.band_mask(torch.tensor([0.5, 1.5]), basis), mask[..., :1].float())
