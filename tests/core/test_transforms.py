"""Round trip, orthonormality and band layout of every shipped transform."""

import itertools
import math

import pytest
import torch

from kflow.testing import (
    assert_band_index_covers,
    assert_equivariant,
    assert_orthonormal,
    assert_round_trip,
    random_rotation,
)
from kflow.transforms import (
    FourierTransform,
    GraphBasis,
    GraphSpectralTransform,
    PCATransform,
    WaveletTransform,
    coefficient_energy,
)

DTYPES = [(torch.float64, 1e-10), (torch.float32, 1e-4)]


def _randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- Fourier


FOURIER_CASES = [
    dict(shape=(32,)),
    dict(shape=(8, 12)),
    dict(shape=(3, 8, 8)),
    dict(shape=(8, 8, 2), channels_first=False, spatial_dims=2),
    dict(shape=(4, 6, 8), spatial_dims=3),
    dict(shape=(2, 4, 4, 4), spatial_dims=3),
]


@pytest.mark.parametrize("case", FOURIER_CASES, ids=lambda c: str(c["shape"]))
@pytest.mark.parametrize("dtype, atol", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
def test_fourier_round_trip_and_orthonormal(case, dtype, atol, batch):
    transform = FourierTransform(num_bands=3, **case)
    x = _randn(batch, *case["shape"], dtype=dtype)
    assert transform.forward(x).shape == x.shape
    assert_round_trip(transform, x, atol=atol)
    assert_orthonormal(transform, x, atol=atol)
    assert_band_index_covers(transform, coeff_shape=case["shape"])
    assert transform.band_index.shape == case["shape"]


def test_fourier_matches_hartley_formula():
    n = 10
    x = _randn(2, n)
    idx = torch.arange(n, dtype=torch.float64)
    angle = 2 * math.pi * idx[:, None] * idx[None, :] / n
    cas = (torch.cos(angle) + torch.sin(angle)) / math.sqrt(n)
    torch.testing.assert_close(FourierTransform((n,), 2).forward(x), x @ cas.T)


def test_fourier_is_its_own_inverse():
    transform = FourierTransform((3, 6, 6), 2)
    x = _randn(2, 3, 6, 6)
    torch.testing.assert_close(transform.forward(transform.forward(x)), x)


def test_fourier_bands_are_radially_symmetric_with_dc_in_band_zero():
    transform = FourierTransform((16, 16), num_bands=4)
    bands = transform.band_index
    assert bands[0, 0] == 0
    idx = torch.arange(16)
    neg = (-idx) % 16
    assert torch.equal(bands, bands[neg][:, neg])  # f and -f share a band
    assert torch.equal(bands, bands.T)  # square grid: swapping axes keeps the radius
    radius_sq = torch.fft.fftfreq(16)[:, None] ** 2 + torch.fft.fftfreq(16)[None, :] ** 2
    order = torch.argsort(radius_sq.flatten())
    assert (bands.flatten()[order].diff() >= 0).all(), "bands must grow with radius"


def test_fourier_channels_share_the_band_of_their_frequency():
    first = FourierTransform((3, 8, 8), 3).band_index
    last = FourierTransform((8, 8, 3), 3, channels_first=False, spatial_dims=2).band_index
    spatial = FourierTransform((8, 8), 3).band_index
    assert all(torch.equal(first[c], spatial) for c in range(3))
    assert all(torch.equal(last[..., c], spatial) for c in range(3))


def test_fourier_per_coefficient_bands_one_per_distinct_radius():
    transform = FourierTransform((8, 8), num_bands=None)
    folded = torch.minimum(torch.arange(8), 8 - torch.arange(8))
    distinct = {int(a * a + b * b) for a in folded for b in folded}
    assert transform.num_bands == len(distinct) == 15  # a<=b in 0..4
    assert_band_index_covers(transform)
    assert FourierTransform((8, 8), "per_coefficient").num_bands == 15


def test_fourier_equal_count_and_equal_energy_groupings():
    count = FourierTransform((16, 16), 3, grouping="equal_count")
    sizes = torch.bincount(count.band_index.flatten()).tolist()
    assert max(sizes) - min(sizes) <= 16  # shells are kept whole, so only roughly equal
    smooth = torch.cumsum(torch.cumsum(_randn(64, 16, 16), 1), 2)  # energy at low frequency
    energy = coefficient_energy(FourierTransform((16, 16), 1), smooth)
    by_energy = FourierTransform((16, 16), 3, grouping="equal_energy", energy=energy)
    per_band = torch.zeros(3, dtype=torch.float64).index_add_(0, by_energy.band_index.flatten(), energy.flatten())
    assert per_band.min() > 0.1 * per_band.sum()
    assert (by_energy.band_index == 0).sum() < (count.band_index == 0).sum()


def test_fourier_rejects_bad_input():
    transform = FourierTransform((3, 8, 8), 3)
    with pytest.raises(ValueError, match=r"expected \(B, \*\(3, 8, 8\)\)"):
        transform.forward(torch.randn(2, 8, 8))
    with pytest.raises(ValueError, match="spatial_dims"):
        FourierTransform((2, 3, 4, 5), 3)
    with pytest.raises(ValueError, match="energy shape"):
        FourierTransform((4, 4), 2, grouping="equal_energy", energy=torch.ones(5))


def test_fourier_device_argument():
    transform = FourierTransform((8, 8), 3, device="cpu").to("cpu")
    assert transform.band_index.device.type == "cpu"


# ----------------------------------------------------------------------------- graph spectral


def _points(batch, n=17, seed=0):
    return 3.0 * _randn(batch, n, 3, seed=seed)


def _band_projections(basis: GraphBasis, num_bands: int) -> torch.Tensor:
    """(B, K, N, N) projection onto each band's eigenvectors (basis-choice independent)."""
    vecs = basis.eigvecs
    projections = []
    for band in range(num_bands):
        mask = (basis.band_index[..., 0] == band).to(vecs.dtype).unsqueeze(1)
        projections.append((vecs * mask) @ vecs.transpose(1, 2))
    return torch.stack(projections, 1)


def n_points(points):
    return points.shape[1]


def _cube(dtype=torch.float64):
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=dtype)[None]


def _polygon(n, dtype=torch.float64):
    angle = torch.arange(n, dtype=dtype) * 2 * math.pi / n
    return torch.stack([angle.cos(), angle.sin(), torch.zeros_like(angle)], -1)[None]


@pytest.mark.parametrize("dtype, atol", DTYPES)
@pytest.mark.parametrize("batch", [1, 4])
def test_graph_round_trip_and_orthonormal(dtype, atol, batch):
    transform = GraphSpectralTransform(num_bands=3)
    basis = transform.basis(_points(batch).to(dtype))
    assert basis.eigvecs.shape == (batch, 17, 17) and basis.eigvals.shape == (batch, 17)
    assert basis.band_index.shape == (batch, 17, 1) and basis.band_index.dtype == torch.long
    x = _randn(batch, 17, 6, dtype=dtype, seed=1)
    assert_round_trip(transform, x, basis, atol=atol)
    assert_orthonormal(transform, x, basis, atol=atol)
    assert_band_index_covers(transform, basis, coeff_shape=(17, 6))


def test_graph_band_zero_holds_the_constant_vector():
    transform = GraphSpectralTransform(num_bands=3, kernel_width=2.0)
    basis = transform.basis(_points(5))
    torch.testing.assert_close(basis.eigvals[:, 0], torch.zeros(5, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(basis.eigvecs[:, :, 0], torch.full((5, 17), 17**-0.5, dtype=torch.float64))
    assert (basis.band_index[:, 0] == 0).all()
    assert (basis.eigvals.diff(dim=1) >= 0).all()
    # equal_count on 17 distinct eigenvalues: cuts nearest 17/3 and 34/3.
    assert torch.bincount(basis.band_index[0, :, 0]).tolist() == [6, 5, 6]


def test_graph_basis_matches_laplacian_definition():
    points = _points(1, n=5)
    transform = GraphSpectralTransform(num_bands=2, kernel_width=1.5)
    dist_sq = ((points[0, :, None] - points[0, None]) ** 2).sum(-1)
    weights = torch.exp(-dist_sq / (2 * 1.5**2)) * (1 - torch.eye(5, dtype=torch.float64))
    laplacian = torch.diag(weights.sum(1)) - weights
    basis = transform.basis(points)
    torch.testing.assert_close(basis.eigvals[0], torch.linalg.eigvalsh(laplacian))
    vecs = basis.eigvecs[0]
    torch.testing.assert_close(laplacian @ vecs, vecs * basis.eigvals[0])


@pytest.mark.parametrize("kernel_width", ["median", 2.5])
def test_graph_basis_invariant_to_rotation_and_translation(kernel_width):
    transform = GraphSpectralTransform(num_bands=3, kernel_width=kernel_width)
    rotation = random_rotation(generator=torch.Generator().manual_seed(3))
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def spectral(points):
        basis = transform.basis(points)
        return basis.eigvals, basis.eigvecs, basis.band_index

    assert_equivariant(spectral, _points(4), lambda p: p @ rotation.T + shift, lambda out: out, atol=1e-9, rtol=1e-9)


def test_median_width_is_scale_invariant():
    transform = GraphSpectralTransform(num_bands=3)
    points = _points(2)
    a, b = transform.basis(points), transform.basis(7.0 * points)
    torch.testing.assert_close(a.eigvecs, b.eigvecs)
    torch.testing.assert_close(a.eigvals, b.eigvals)


@pytest.mark.parametrize("points", [_cube(), _polygon(8), _polygon(17)], ids=["cube", "octagon", "17-gon"])
@pytest.mark.parametrize("num_bands", [2, 3])
def test_graph_degenerate_eigenspaces_stay_in_one_band(points, num_bands):
    transform = GraphSpectralTransform(num_bands=num_bands)
    basis = transform.basis(points)
    vals, bands = basis.eigvals[0], basis.band_index[0, :, 0]
    close = (vals[:, None] - vals[None, :]).abs() < 1e-6 * vals.max()
    assert close.sum() > n_points(points), "the fixture must have degenerate eigenvalues"
    split = (bands[:, None] != bands[None, :]) & close
    assert not split.any(), f"degenerate eigenvalues split across bands: {vals.tolist()} {bands.tolist()}"
    assert_band_index_covers(transform, basis)


@pytest.mark.parametrize("points", [_points(1), _cube(), _polygon(8)], ids=["random", "cube", "octagon"])
def test_graph_band_projections_are_deterministic_and_permutation_equivariant(points):
    transform = GraphSpectralTransform(num_bands=3)
    n = points.shape[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    rotation = random_rotation(generator=torch.Generator().manual_seed(1))
    projections = _band_projections(transform.basis(points), 3)
    moved = _band_projections(transform.basis(points[:, perm] @ rotation.T), 3)
    torch.testing.assert_close(moved, projections[:, :, perm][:, :, :, perm], atol=1e-9, rtol=0)


def test_graph_degenerate_sample_does_not_change_other_samples():
    transform = GraphSpectralTransform(num_bands=3)
    generic = _points(1, n=8)
    alone = transform.basis(generic)
    mixed = transform.basis(torch.cat([generic, _cube()]))
    assert torch.equal(mixed.band_index[:1], alone.band_index)
    torch.testing.assert_close(mixed.eigvecs[:1], alone.eigvecs)


def test_graph_equal_radius_grouping():
    transform = GraphSpectralTransform(num_bands=3, grouping="equal_radius")
    basis = transform.basis(_points(3))
    assert_band_index_covers(transform, basis)
    for vals, bands in zip(basis.eigvals, basis.band_index[..., 0]):
        width = (vals[-1] - vals[0]) / 3
        expected_cut = vals[0] + width  # band 1 starts near the first equal-width edge
        first_band1 = vals[bands == 1][0]
        last_band0 = vals[bands == 0][-1]
        assert last_band0 <= expected_cut + width / 2 and first_band1 >= expected_cut - width / 2


def test_graph_rejects_bad_input():
    transform = GraphSpectralTransform(num_bands=3)
    basis = transform.basis(_points(2))
    with pytest.raises(ValueError, match="context must be the GraphBasis"):
        transform.forward(_randn(2, 17, 6))
    with pytest.raises(ValueError, match=r"expected \(B, N, d\)"):
        transform.forward(_randn(2, 16, 6), basis)
    with pytest.raises(AttributeError, match="band_index_for"):
        _ = transform.band_index
    with pytest.raises(ValueError, match="kernel_width"):
        GraphSpectralTransform(3, kernel_width=-1.0)
    with pytest.raises(ValueError, match="grouping"):
        GraphSpectralTransform(3, grouping="equal_energy")
    with pytest.raises(ValueError, match="points must be"):
        transform.basis(_randn(17, 3))


# ----------------------------------------------------------------------------- wavelet


def _pywt_packed(x, wavelet, levels):
    import numpy as np
    import pywt

    images = x.numpy().reshape(-1, *x.shape[-2:])
    packed = [
        pywt.coeffs_to_array(pywt.wavedec2(image, wavelet, mode="periodization", level=levels))[0] for image in images
    ]
    return torch.from_numpy(np.stack(packed)).reshape(x.shape)


WAVELET_CASES = [
    ("haar", 1, (4, 4)),
    ("db2", 2, (8, 16)),
    ("db6", 3, (3, 32, 32)),
    ("sym4", 2, (2, 16, 8)),
]


@pytest.mark.filterwarnings("ignore:Level value")
@pytest.mark.parametrize("wavelet, levels, shape", WAVELET_CASES)
def test_wavelet_matches_pywavelets(wavelet, levels, shape):
    x = _randn(2, *shape)
    coeffs = WaveletTransform(shape, wavelet, levels).forward(x)
    torch.testing.assert_close(coeffs, _pywt_packed(x, wavelet, levels), atol=1e-12, rtol=0)


@pytest.mark.parametrize("wavelet, levels, shape", WAVELET_CASES)
@pytest.mark.parametrize("dtype, atol", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
def test_wavelet_round_trip_and_orthonormal(wavelet, levels, shape, dtype, atol, batch):
    transform = WaveletTransform(shape, wavelet, levels)
    x = _randn(batch, *shape, dtype=dtype)
    assert_round_trip(transform, x, atol=atol)
    assert_orthonormal(transform, x, atol=atol)
    assert_band_index_covers(transform, coeff_shape=shape)
    assert transform.num_bands == levels + 1


def test_wavelet_band_layout_follows_levels():
    transform = WaveletTransform((3, 16, 16), "haar", levels=3)
    bands = transform.band_index
    assert bands.shape == (3, 16, 16)
    assert (bands[:, :2, :2] == 0).all()
    assert (bands[:, :4, 2:4] == 1).all() and (bands[:, 2:4, :2] == 1).all()
    assert (bands[:, 8:, :] == 3).all() and (bands[:, :, 8:] == 3).all()
    assert torch.bincount(bands[0].flatten()).tolist() == [4, 12, 48, 192]


def test_wavelet_constant_image_lives_in_band_zero():
    transform = WaveletTransform((16, 16), "db6", levels=2)
    coeffs = transform.forward(torch.ones(1, 16, 16, dtype=torch.float64))
    assert coeffs[0, transform.band_index != 0].abs().max() < 1e-12


def test_wavelet_merged_levels():
    transform = WaveletTransform((16, 16), "haar", levels=3, num_bands=2)
    assert transform.num_bands == 2
    bands = transform.band_index
    assert (bands[8:, :] == 1).all()  # finest level (192 coefficients) is one band
    assert (bands[:8, :8] == 0).all()


def test_wavelet_rejects_bad_input():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*levels = 8"):
        WaveletTransform((28, 28), "db6", levels=3)
    with pytest.raises(ValueError, match="not orthogonal"):
        WaveletTransform((16, 16), "bior2.2", levels=1)
    with pytest.raises(ValueError, match="unknown wavelet"):
        WaveletTransform((16, 16), "nope", levels=1)
    with pytest.raises(ValueError, match=r"expected \(B, \*\(16, 16\)\)"):
        WaveletTransform((16, 16), "haar", levels=1).forward(torch.zeros(1, 3, 16, 16))


# ----------------------------------------------------------------------------- PCA


def _structured(num, shape=(4, 5), rank=6, seed=0):
    """Samples on a noisy low-rank subspace with decaying variances and a non-zero mean."""
    gen = torch.Generator().manual_seed(seed)
    dim = math.prod(shape)
    basis = torch.linalg.qr(torch.randn(dim, rank, dtype=torch.float64, generator=gen))[0]
    scales = 2.0 ** -torch.arange(rank, dtype=torch.float64)
    latent = torch.randn(num, rank, dtype=torch.float64, generator=gen) * scales
    noise = 1e-3 * torch.randn(num, dim, dtype=torch.float64, generator=gen)
    return (latent @ basis.T + noise + 0.5).reshape(num, *shape)


@pytest.mark.parametrize("num_samples", [8, 200], ids=["N<D", "N>D"])
@pytest.mark.parametrize("dtype, atol", DTYPES)
@pytest.mark.parametrize("batch", [1, 3])
def test_pca_round_trip_and_orthonormal(num_samples, dtype, atol, batch):
    transform = PCATransform.fit(_structured(num_samples).to(dtype), num_bands=3)
    x = _randn(batch, 4, 5, dtype=dtype)
    assert transform.forward(x).shape == (batch, 20)
    assert_round_trip(transform, x, atol=atol)
    assert_orthonormal(transform, x, atol=atol)
    assert_band_index_covers(transform, coeff_shape=(20,))


def test_pca_orders_components_by_variance_and_decorrelates():
    data = _structured(500)
    transform = PCATransform.fit(data, num_bands=4)
    flat = data.reshape(500, -1)
    covariance = torch.cov(flat.T)
    expected = torch.linalg.eigvalsh(covariance).flip(0)
    torch.testing.assert_close(transform.explained_variance, expected, atol=1e-12, rtol=1e-9)
    coeffs = transform.forward(data - transform.mean.reshape(4, 5))
    torch.testing.assert_close(torch.cov(coeffs.T), torch.diag(expected), atol=1e-12, rtol=1e-9)
    assert (transform.explained_variance.diff() <= 0).all()
    assert transform.band_index.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5


def test_pca_is_linear_without_mean_subtraction():
    transform = PCATransform.fit(_structured(50), num_bands=2)
    assert transform.forward(torch.zeros(1, 4, 5, dtype=torch.float64)).abs().max() == 0
    assert transform.mean.abs().max() > 0.4


def test_pca_completes_basis_with_zero_variance_in_last_band():
    transform = PCATransform.fit(_structured(8), num_bands=2, grouping="equal_energy")
    assert (transform.explained_variance[8:] == 0).all()
    assert transform.band_index[-1] == 1
    # equal_energy: the dominant component alone carries ~2/3 of the variance.
    assert (transform.band_index == 0).sum() == 1


def test_pca_uncentered_puts_the_mean_direction_first():
    data = _structured(100)
    transform = PCATransform.fit(data, num_bands=2, centered=False)
    mean_direction = transform.mean / transform.mean.norm()
    assert abs(float(transform.components[:, 0] @ mean_direction)) > 0.99


def test_pca_save_load_round_trip(tmp_path):
    transform = PCATransform.fit(_structured(30).float(), num_bands=3, grouping="equal_energy")
    path = tmp_path / "pca.pt"
    transform.save(path)
    loaded = PCATransform.load(path)
    for name in ("components", "explained_variance", "mean", "band_index"):
        assert torch.equal(getattr(loaded, name), getattr(transform, name)), name
    assert (loaded.shape, loaded.num_bands, loaded.grouping) == ((4, 5), 3, "equal_energy")
    x = _randn(2, 4, 5, dtype=torch.float32)
    torch.testing.assert_close(loaded.forward(x), transform.forward(x))


def test_pca_load_and_fit_reject_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file at"):
        PCATransform.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"cannot read {junk}"):
        PCATransform.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="is not a saved PCATransform"):
        PCATransform.load(other)
    with pytest.raises(ValueError, match="NaN or Inf"):
        PCATransform.fit(torch.full((4, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="N >= 2"):
        PCATransform.fit(torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match=r"expected \(B, \*\(4, 5\)\)"):
        PCATransform.fit(_structured(10), 2).forward(torch.zeros(1, 20))


# ----------------------------------------------------------------------------- shared behaviour


def test_wavelet_level_matrix_is_orthogonal_even_when_filter_wraps():
    from kflow.transforms.wavelet import _decomposition_filters, level_matrix

    for n in (4, 8, 64):  # db6 has 12 taps: wraps several times for n = 4
        matrix = level_matrix(_decomposition_filters("db6"), n)
        torch.testing.assert_close(matrix @ matrix.T, torch.eye(n, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FourierTransform((2, 4, 4), 2),
        lambda: WaveletTransform((2, 4, 4), "db2", 1),
        lambda: PCATransform.fit(_randn(10, 2, 4, 4), 2),
    ],
    ids=["fourier", "wavelet", "pca"],
)
def test_fixed_transforms_are_differentiable_and_move_devices(make):
    transform = make().to("cpu")
    x = _randn(2, 2, 4, 4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: transform.inverse(transform.forward(t) * 2.0), (x,))
    assert transform.band_index.device.type == "cpu"
