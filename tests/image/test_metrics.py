"""Metric functions against hand-computed cases."""

import itertools
import math

import pytest
import torch

from kflow_image.metrics import (
    class_drop_ratio,
    classifier_accuracy,
    frechet_distance,
    kernel_distance,
    manifold_radii,
    mmd2_unbiased,
    polynomial_kernel,
    precision_recall,
    psnr,
    radial_power_spectrum,
    ssim,
)


def features(n=400, d=5, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_fd_of_identical_sets_is_zero():
    a = features()
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_shifted_and_scaled_sets():
    a = features()
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0], dtype=torch.float64)
    # same covariance: FD is the squared mean shift, 1 + 4 + 0.25
    assert frechet_distance(a, a + shift) == pytest.approx(5.25, abs=1e-9)
    # b = 2 (a - mean): tr(S + 4 S - 2 * 2 S) = tr(S), plus |mean|^2
    centred = a - a.mean(0)
    expected = torch.cov(a.T).trace().item() + a.mean(0).square().sum().item()
    assert frechet_distance(a, 2 * centred) == pytest.approx(expected, rel=1e-9)


def test_mmd_matches_brute_force():
    x, y = features(6, 3, 1), features(5, 3, 2) + 0.3

    def k(u, v):
        return (u @ v / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(6), 2)) / 30
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    xy = sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / 30
    assert mmd2_unbiased(x, y) == pytest.approx((xx + yy - 2 * xy).item(), rel=1e-10)
    assert polynomial_kernel(x, y).shape == (6, 5)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    a, b = features(600, 4, 3), features(600, 4, 4)
    same, shifted = kernel_distance(a, b, num_subsets=20), kernel_distance(a, b + 1.0, num_subsets=20)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert shifted.mean > 10 * max(abs(same.mean), same.std)


def test_precision_recall_hand_case():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    # k = 1 radii of the real points: 1 each. Fake points 0.5 and 10: only the first is covered.
    fake = torch.tensor([[0.5], [10.0], [2.5]])
    pr = precision_recall(real, fake, k=1)
    assert pr.precision == pytest.approx(2 / 3)
    # fake radii (k = 1): 0.5 -> 2.0, 2.5 -> 2.0, 10 -> 7.5; every real point is within a fake ball
    assert pr.recall == pytest.approx(1.0)
    same = precision_recall(real, real, k=1)
    assert (same.precision, same.recall) == (1.0, 1.0)
    with pytest.raises(ValueError, match="more than"):
        precision_recall(real[:1], fake, k=1)


def dense_precision_recall(real, fake, k):
    """Reference implementation: full N x N and N x M distance matrices at once."""
    real_radii = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    fake_radii = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    precision = (torch.cdist(fake, real) <= real_radii[None]).any(dim=1).double().mean().item()
    recall = (torch.cdist(real, fake) <= fake_radii[None]).any(dim=1).double().mean().item()
    return precision, recall


@pytest.mark.parametrize("chunk_size", [3, 64, 10_000])
def test_chunked_precision_recall_equals_dense(chunk_size):
    real, fake = features(120, 4, 11), 0.8 * features(90, 4, 12) + 0.4
    pr = precision_recall(real, fake, k=3, chunk_size=chunk_size)
    assert (pr.precision, pr.recall) == dense_precision_recall(real, fake, 3)
    assert 0 < pr.precision < 1 and 0 < pr.recall < 1  # a case where both sides of every ball matter
    torch.testing.assert_close(
        manifold_radii(real, 3, chunk_size), torch.cdist(real, real).kthvalue(4, 1).values, rtol=0, atol=1e-12
    )


def test_classifier_accuracy():
    assert classifier_accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75


def test_cdr_is_one_when_dropping_changes_nothing_and_grows_otherwise():
    ref = torch.cat([features(100, 3, 5), features(100, 3, 6) + 3])
    ref_labels = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    kept = torch.cat([features(80, 3, 7) + 0.2, features(80, 3, 8) + 3.2])
    labels = torch.cat([torch.zeros(80), torch.ones(80)]).long()
    same = class_drop_ratio(ref, ref_labels, kept, kept.clone(), labels)
    assert same.cdr == pytest.approx(1.0)
    worse = class_drop_ratio(ref, ref_labels, kept, kept + 1.0, labels)
    for c in (0, 1):
        assert worse.fd_dropped[c] > worse.fd_kept[c]
    expected = sum(worse.fd_dropped[c] / worse.fd_kept[c] for c in (0, 1)) / 2
    assert worse.cdr == pytest.approx(expected) and worse.cdr > 1


def test_psnr_and_ssim_hand_cases():
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    assert psnr(x + 0.1, x).tolist() == pytest.approx([10 * math.log10(4 / 0.01)] * 2)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    noisy = x + 0.5 * torch.randn_like(x)
    assert (ssim(noisy, x) < 0.9).all()
    assert ssim(torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)).shape == (1,)


def test_radial_power_spectrum_of_constant_and_single_frequency():
    const = torch.full((3, 1, 8, 8), 0.5)
    spectrum = radial_power_spectrum(const)
    assert spectrum.radius[0] == 0
    assert spectrum.power[0].item() == pytest.approx(0.25 * 64)  # |ortho DFT at 0|^2 = (8 * 8 * 0.5)^2 / 64
    assert spectrum.power[1:].abs().max() < 1e-20
    cols = torch.arange(8, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * 2 * cols / 8).expand(1, 1, 8, 8)
    s = radial_power_spectrum(wave)
    assert int(s.radius[s.power.argmax()]) == 2
    # energy is preserved: sum over bins of (mean power * count) == sum of squares
    total = sum(
        float(p)
        * int(
            (
                (torch.fft.fftfreq(8, 1 / 8)[:, None] ** 2 + torch.fft.fftfreq(8, 1 / 8)[None] ** 2).sqrt().round() == r
            ).sum()
        )
        for r, p in zip(s.radius, s.power)
    )
    assert total == pytest.approx(wave.square().sum().item())
