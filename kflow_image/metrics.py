"""Sample-quality metrics on feature sets, plus image-space measures.

- :func:`frechet_distance` — FD between Gaussian fits of two feature sets held in memory (FD-<net>,
  never "FID"; the streamed FD and the Inception FID are in :mod:`kflow_image.fid`).
- :func:`frechet_bootstrap` — that FD with a bootstrap confidence interval over the samples.
- :func:`kernel_distance` — KID: unbiased MMD^2 with the cubic polynomial kernel, over subsets.
- :func:`precision_recall` — Kynkäänniemi et al. (2019) k-NN manifold precision and recall,
  computed in row blocks (:func:`manifold_radii`, :func:`covered_fraction`).
- :func:`class_drop_ratio` — CDR: per-class FD with the class kept for all of k vs dropped
  after 30% of k, as a ratio (see its docstring).
- :func:`radial_power_spectrum`, :func:`psnr`, :func:`ssim` — image-space measures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from kflow.stats import BootstrapCI, bootstrap_ci


def _gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = features.double()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"metrics: need features of shape (N >= 2, D), got {tuple(x.shape)}")
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits: ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})``.

    The trace of the matrix square root is computed as ``tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})``,
    which is symmetric and therefore stable.

    Args:
        features_a: shape ``(N, D)``.
        features_b: shape ``(M, D)``.

    Returns:
        The distance (float >= 0; exactly 0 up to round-off for identical sets).
    """
    mu_a, cov_a = _gaussian_fit(features_a)
    mu_b, cov_b = _gaussian_fit(features_b)
    root_a = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return max(value.item(), 0.0)


def frechet_bootstrap(
    reference: torch.Tensor,
    samples: torch.Tensor,
    num_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """FD with a bootstrap confidence interval over the *samples* (the reference is held fixed).

    The samples are resampled with replacement (:func:`kflow.stats.bootstrap_ci`, percentile
    interval) and the FD to the fixed reference Gaussian recomputed for each resample, so the
    interval shows how much the score moves with the particular samples drawn. Resampling with
    replacement duplicates samples, which shrinks their covariance estimate and inflates FD (for
    1,000 64-d features the resampled FDs sit ~30% above the estimate, outside a plain
    percentile interval), so the interval is shifted by that bootstrap bias to centre it on the
    estimate: its width is the sampling spread, the floor of FD is ``reference_floor``.

    Args:
        reference: reference features ``(N, D)``.
        samples: sample features ``(M, D)``, M >= 2.
        num_resamples: bootstrap resamples (>= 100).
        level: coverage of the interval.
        seed: seed of the resampling.

    Returns:
        :class:`kflow.stats.BootstrapCI` whose ``estimate`` is :func:`frechet_distance`.
    """
    mu_r, cov_r = _gaussian_fit(reference)
    root_r, fake = _sqrt_psd(cov_r), samples.double()

    def fd_of(rows: np.ndarray) -> np.ndarray:  # (R, M, 1) sample indices -> (R,) distances
        out = []
        for index in rows[..., 0].astype(np.int64):
            mu_s, cov_s = _gaussian_fit(fake[torch.from_numpy(index)])
            cross = torch.linalg.eigvalsh(root_r @ cov_s @ root_r).clamp_min(0).sqrt().sum()
            value = (mu_r - mu_s).square().sum() + cov_r.trace() + cov_s.trace() - 2 * cross
            out.append(max(value.item(), 0.0))
        return np.asarray(out)

    items = np.arange(len(fake), dtype=np.float64)[:, None]  # resample indices, not the (M, D) features
    ci = bootstrap_ci(fd_of, items, level=level, num_resamples=num_resamples, seed=seed)
    shift = (ci.low + ci.high) / 2 - ci.estimate  # duplicated rows inflate FD: remove the bootstrap bias
    return replace(ci, low=max(ci.low - shift, 0.0), high=ci.high - shift)


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """``k(x, y) = (x.y / D + coef0) ** degree``; x ``(N, D)``, y ``(M, D)`` -> ``(N, M)``."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 estimate with :func:`polynomial_kernel`; x ``(N, D)``, y ``(M, D)``, N, M >= 2."""
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    k_xx, k_yy, k_xy = (
        polynomial_kernel(x, x, degree, coef0),
        polynomial_kernel(y, y, degree, coef0),
        polynomial_kernel(x, y, degree, coef0),
    )
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return (term_xx + term_yy - 2 * k_xy.mean()).item()


@dataclass
class KernelDistance:
    """KID: mean and standard deviation of unbiased MMD^2 over random subsets."""

    mean: float
    std: float


def kernel_distance(
    features_a: torch.Tensor, features_b: torch.Tensor, num_subsets: int = 50, subset_size: int = 500, seed: int = 0
) -> KernelDistance:
    """Kernel Inception-style distance on arbitrary features (Bińkowski et al., 2018).

    Args:
        features_a: shape ``(N, D)``.
        features_b: shape ``(M, D)``.
        num_subsets: number of random subset pairs.
        subset_size: subset size (``min(N, M) // 2`` when that is not smaller than ``min(N, M)``).
        seed: seed of the subset draws.

    Returns:
        :class:`KernelDistance` (may be slightly negative: the estimator is unbiased).
    """
    smaller = min(len(features_a), len(features_b))
    # subsets as large as the whole set would all be identical; halve so the std means something
    size = subset_size if subset_size < smaller else smaller // 2
    if size < 2:
        raise ValueError("metrics: KID needs at least 2 samples in each set")
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor(
        [
            mmd2_unbiased(
                features_a[torch.randperm(len(features_a), generator=generator)[:size]],
                features_b[torch.randperm(len(features_b), generator=generator)[:size]],
            )
            for _ in range(num_subsets)
        ],
        dtype=torch.float64,
    )
    return KernelDistance(values.mean().item(), values.std(unbiased=False).item())


@dataclass
class PrecisionRecall:
    """Kynkäänniemi et al. (2019) improved precision and recall, both in [0, 1]."""

    precision: float
    recall: float


def _chunk_len(num_cols: int, chunk_size: int | None) -> int:
    """Rows per distance block: ``chunk_size``, or enough for about 256 MB of float64 ``(rows, num_cols)``."""
    return chunk_size or max(1, 2**25 // max(num_cols, 1))


def manifold_radii(manifold: torch.Tensor, k: int, chunk_size: int | None = None) -> torch.Tensor:
    """Distance of every point to its k-th nearest other point, computed a block of rows at a time.

    Args:
        manifold: points ``(N, D)``; N must exceed k.
        k: neighbour rank (the point itself, at distance 0, is skipped).
        chunk_size: rows per ``(chunk, N)`` distance block (default: about 256 MB of float64).

    Returns:
        Radii ``(N,)``.
    """
    if len(manifold) <= k:
        raise ValueError(f"metrics: precision/recall with k={k} needs more than {k} points per set")
    step = _chunk_len(len(manifold), chunk_size)
    return torch.cat(
        [
            torch.cdist(manifold[i : i + step], manifold).kthvalue(k + 1, dim=1).values
            for i in range(0, len(manifold), step)
        ]
    )


def covered_fraction(
    manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, chunk_size: int | None = None
) -> float:
    """Fraction of ``queries (M, D)`` inside the union of balls ``(manifold (N, D), radii (N,))``.

    Distances are computed a ``(chunk, N)`` block at a time; no ``(M, N)`` matrix is formed.
    """
    step = _chunk_len(len(manifold), chunk_size)
    inside = sum(
        int((torch.cdist(queries[i : i + step], manifold) <= radii[None]).any(dim=1).sum())
        for i in range(0, len(queries), step)
    )
    return inside / len(queries)


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk_size: int | None = None
) -> PrecisionRecall:
    """Precision (fake inside the real manifold) and recall (real inside the fake manifold).

    Kynkäänniemi et al. (2019): each set's manifold is the union of balls reaching each
    point's k-th nearest neighbour. Computed in row blocks, so 50k x 50k sets never form an
    ``N x N`` matrix; the blocks only change how the same distances are grouped.

    Args:
        real: reference features ``(N, D)``.
        fake: sample features ``(M, D)``.
        k: neighbourhood size for the ball radii.
        chunk_size: rows per distance block (default: about 256 MB of float64 per block).
    """
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = manifold_radii(real, k, chunk_size), manifold_radii(fake, k, chunk_size)
    return PrecisionRecall(
        covered_fraction(real, real_radii, fake, chunk_size), covered_fraction(fake, fake_radii, real, chunk_size)
    )


def classifier_accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of class-conditional samples the classifier assigns their requested label; ``(N,)`` each."""
    if predicted.shape != labels.shape:
        raise ValueError(f"metrics: predicted {tuple(predicted.shape)} vs labels {tuple(labels.shape)}")
    return (predicted == labels).double().mean().item()


@dataclass
class ClassDropRatio:
    """CDR and its per-class ingredients.

    Attributes:
        cdr: mean over classes of ``fd_dropped[c] / fd_kept[c]``.
        fd_kept: per-class FD with the condition kept for all of k, ``{class: fd}``.
        fd_dropped: per-class FD with the condition dropped after 30% of k.
    """

    cdr: float
    fd_kept: dict[int, float]
    fd_dropped: dict[int, float]


def class_drop_ratio(
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    kept: torch.Tensor,
    dropped: torch.Tensor,
    sample_labels: torch.Tensor,
) -> ClassDropRatio:
    """Class-drop ratio: how much per-class quality is lost when the label is dropped early.

    K-Flow generates low scales first, so the class should be settled once the low bands are;
    dropping the condition for the last 70% of k should then cost little. For each class c,
    FD is measured between class-c reference features and class-c samples generated (from the
    same noise) with the condition kept throughout, and with it dropped after 30% of k.
    ``CDR = mean_c FD_dropped(c) / FD_kept(c)``: 1 means no loss, larger is worse.

    Args:
        reference: reference features ``(N, D)``.
        reference_labels: ``(N,)``.
        kept: features of samples generated with the label kept, ``(M, D)``.
        dropped: features of samples from the same noise and labels with the label dropped, ``(M, D)``.
        sample_labels: the requested labels, ``(M,)``.
    """
    fd_kept, fd_dropped = {}, {}
    for c in sorted(set(sample_labels.tolist())):
        ref_c, mask = reference[reference_labels == c], sample_labels == c
        if len(ref_c) < 2 or mask.sum() < 2:
            continue
        fd_kept[c] = frechet_distance(ref_c, kept[mask])
        fd_dropped[c] = frechet_distance(ref_c, dropped[mask])
    if not fd_kept:
        raise ValueError("metrics: CDR needs at least 2 samples and 2 references of some class")
    ratios = [fd_dropped[c] / max(fd_kept[c], 1e-12) for c in fd_kept]
    return ClassDropRatio(sum(ratios) / len(ratios), fd_kept, fd_dropped)


@dataclass
class RadialSpectrum:
    """Mean radial power spectrum.

    Attributes:
        radius: integer frequency radius of each bin, shape ``(R,)``.
        power: mean power per bin, shape ``(R,)``.
    """

    radius: torch.Tensor
    power: torch.Tensor


def radial_power_spectrum(images: torch.Tensor) -> RadialSpectrum:
    """Mean |FFT|^2 binned by rounded radial frequency, averaged over images and channels.

    Args:
        images: shape ``(N, C, H, W)``.
    """
    h, w = images.shape[-2:]
    power = torch.fft.fft2(images.double(), norm="ortho").abs().square().mean(dim=(0, 1))
    fy, fx = torch.fft.fftfreq(h, d=1.0 / h), torch.fft.fftfreq(w, d=1.0 / w)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None] ** 2).round().long()
    bins = torch.bincount(radius.flatten(), weights=power.flatten())
    counts = torch.bincount(radius.flatten())
    valid = counts > 0
    return RadialSpectrum(torch.arange(len(bins))[valid], bins[valid] / counts[valid])


def psnr(x: torch.Tensor, target: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image; x, target ``(N, C, H, W)`` -> ``(N,)``."""
    mse = (x.double() - target.double()).square().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-20))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None]


def ssim(
    x: torch.Tensor, target: torch.Tensor, data_range: float = 2.0, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Structural similarity (Wang et al., 2004) per image, Gaussian window, valid region.

    The window shrinks to the image size for small images (an odd size <= min(H, W)).

    Args:
        x: shape ``(N, C, H, W)``.
        target: shape ``(N, C, H, W)``.
        data_range: max - min of the pixel range (2 for [-1, 1]).
        window: Gaussian window side.
        sigma: Gaussian width.

    Returns:
        Shape ``(N,)``.
    """
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    channels = x.shape[1]
    kernel = _gaussian_window(size, sigma).to(x.device)[None, None].repeat(channels, 1, 1, 1)
    x, target = x.double(), target.double()

    def blur(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v, kernel, groups=channels)

    mu_x, mu_t = blur(x), blur(target)
    var_x = blur(x * x) - mu_x**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(x * target) - mu_x * mu_t
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_t + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_t**2 + c1) * (var_x + var_t + c2))
    return ssim_map.flatten(1).mean(1)
