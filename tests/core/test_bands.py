"""group_bands on hand-computed inputs, band_energy against a direct sum."""

import pytest
import torch

from kflow.transforms import (
    FourierTransform,
    GraphSpectralTransform,
    band_energy,
    coefficient_energy,
    group_bands,
)


def test_equal_count_splits_evenly():
    bands = group_bands(torch.arange(6.0), 3, "equal_count")
    assert bands.tolist() == [0, 0, 1, 1, 2, 2]


def test_equal_count_keeps_ties_in_one_band():
    # Cumulative counts after each distinct value: 1, 4, 5, 6; target 3 -> cut after 4.
    bands = group_bands(torch.tensor([0.0, 1, 1, 1, 2, 3]), 2, "equal_count")
    assert bands.tolist() == [0, 0, 0, 0, 1, 1]


def test_equal_count_is_independent_of_input_order():
    values = torch.tensor([3.0, 0, 2, 1, 1, 1])
    bands = group_bands(values, 2, "equal_count")
    assert bands.tolist() == [1, 0, 1, 0, 0, 0]


def test_equal_radius_uses_equal_width_in_value():
    assert group_bands(torch.arange(8.0), 2, "equal_radius").tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # Width target 5 lies nearest the midpoint 6 between 2 and 10.
    assert group_bands(torch.tensor([0.0, 1, 2, 10]), 2, "equal_radius").tolist() == [0, 0, 0, 1]


def test_equal_energy_balances_energy():
    energy = torch.tensor([3.0, 1, 1, 1])
    bands = group_bands(torch.arange(4.0), 2, "equal_energy", energy=energy)
    assert bands.tolist() == [0, 1, 1, 1]
    energy = torch.tensor([1.0, 1, 1, 3])
    assert group_bands(torch.arange(4.0), 2, "equal_energy", energy=energy).tolist() == [0, 0, 0, 1]


def test_none_gives_one_band_per_distinct_value():
    bands = group_bands(torch.tensor([[3.0, 1], [1, 0]]), None)
    assert bands.tolist() == [[2, 1], [1, 0]]


def test_shape_and_dtype_preserved():
    bands = group_bands(torch.rand(4, 5, dtype=torch.float64), 3)
    assert bands.shape == (4, 5) and bands.dtype == torch.long
    assert torch.bincount(bands.flatten()).tolist() == [7, 6, 7]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_bands=2, mode="bogus"), "unknown mode"),
        (dict(num_bands=4, mode="equal_count"), "distinct values"),
        (dict(num_bands=2, mode="equal_energy"), "needs per-coefficient"),
        (dict(num_bands=0, mode="equal_count"), ">= 1"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_bands(torch.tensor([0.0, 1, 1, 2]), **kwargs)


def test_allow_empty_lets_cuts_coincide():
    bands = group_bands(torch.tensor([0.0, 0, 0]), 3, allow_empty=True)
    assert bands.tolist() == [0, 0, 0]


def test_band_energy_sums_squared_coefficients():
    transform = FourierTransform((16,), num_bands=3)
    x = torch.randn(5, 16, dtype=torch.float64)
    energy = band_energy(transform, x)
    coeffs = transform.forward(x)
    expected = torch.stack([coeffs[:, transform.band_index == b].pow(2).sum() / 5 for b in range(3)])
    torch.testing.assert_close(energy, expected)
    # Orthonormal transform: band energies add up to the mean squared norm.
    torch.testing.assert_close(energy.sum(), x.pow(2).sum() / 5)


def test_coefficient_energy_is_mean_square():
    transform = FourierTransform((4, 4), num_bands=2)
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(coefficient_energy(transform, x), transform.forward(x).pow(2).mean(0))


def test_band_energy_with_per_sample_graph_bands():
    transform = GraphSpectralTransform(num_bands=3)
    gen = torch.Generator().manual_seed(0)
    basis = transform.basis(torch.randn(4, 17, 3, dtype=torch.float64, generator=gen))
    x = torch.randn(4, 17, 6, dtype=torch.float64, generator=gen)
    energy = band_energy(transform, x, basis)
    coeffs = transform.forward(x, basis)
    mask = basis.band_index == 1
    torch.testing.assert_close(energy[1], (coeffs.pow(2) * mask).sum() / 4)
    torch.testing.assert_close(energy.sum(), x.pow(2).sum() / 4)
    # A field that is constant over the nodes lives entirely in band 0 (the constant mode).
    constant = torch.ones(4, 17, 6, dtype=torch.float64)
    high_bands = band_energy(transform, constant, basis)[1:]
    torch.testing.assert_close(high_bands, torch.zeros(2, dtype=torch.float64))
