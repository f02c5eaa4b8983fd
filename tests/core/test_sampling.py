"""KFlowSampler: exact conditional velocity carries x0 to x1; band edges; steering options."""

import pytest
import torch

from kflow.path import KAmplitudePath
from kflow.sampling import KFlowSampler, allocate_steps, share_bands
from kflow.transforms.matrix import MatrixTransform

DTYPE = torch.float64


def make_path(bump="linear", reverse=False, dim=12, num_bands=3):
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=DTYPE))
    transform = MatrixTransform(q, torch.arange(dim) * num_bands // dim, (dim,))
    return KAmplitudePath(transform, bump=bump, reverse=reverse)


def exact_velocity(path, x0, x1, log=None):
    """Conditional velocity of a single pair, as a function of the current k only."""

    def velocity(x, s, cond):
        if log is not None:
            log.append((float(s[0]) * path.num_bands, cond))
        return path.sample(x0, x1, s * path.num_bands).dx_k

    return velocity


def pair(batch=4, dim=12):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, dim, generator=g, dtype=DTYPE), torch.randn(batch, dim, generator=g, dtype=DTYPE)


@pytest.mark.parametrize("method", ["euler", "heun", "rk4", "dopri5"])
@pytest.mark.parametrize("bump,reverse", [("linear", False), ("smoothstep", False), ("cosine", True)])
def test_exact_velocity_carries_x0_to_x1(method, bump, reverse):
    path = make_path(bump, reverse)
    x0, x1 = pair()
    steps = 1 if bump == "linear" else 40
    result = KFlowSampler(path).sample(exact_velocity(path, x0, x1), x0, method=method, steps_per_band=steps)
    atol = {"euler": 5e-2, "heun": 5e-3, "rk4": 1e-6, "dopri5": 1e-4}[method] if bump != "linear" else 1e-4
    torch.testing.assert_close(result.x, x1, atol=atol, rtol=0)
    assert result.nfe > 0


def test_linear_bump_euler_is_exact_with_one_step_per_band():
    path = make_path("linear")
    x0, x1 = pair()
    result = KFlowSampler(path).sample(exact_velocity(path, x0, x1), x0, method="euler", steps_per_band=1)
    torch.testing.assert_close(result.x, x1, atol=1e-12, rtol=0)
    assert result.nfe == 3


def test_steps_never_straddle_band_edges_and_nfe_is_counted():
    path = make_path("smoothstep")
    x0, x1 = pair()
    log = []
    result = KFlowSampler(path).sample(
        exact_velocity(path, x0, x1, log), x0, method="heun", steps_per_band=[2, 3, 4], return_trajectory=True
    )
    assert result.nfe == 2 * (2 + 3 + 4) == len(log)
    assert result.ks[0] == 0.0 and result.ks[-1] == pytest.approx(3.0)
    assert len(result.trajectory) == 1 + 9
    for k, _ in log:  # every evaluation is inside [b, b+1) of the band being integrated
        assert k < 3
    edges = [k for k in result.ks if abs(k - round(k)) < 1e-12]
    assert [round(k) for k in edges] == [0, 1, 2, 3]


def test_drop_condition_after_fraction():
    path = make_path()
    x0, x1 = pair()
    log = []
    KFlowSampler(path).sample(
        exact_velocity(path, x0, x1, log), x0, cond="label", steps_per_band=10, drop_cond_after=0.3
    )
    assert all(c == "label" for k, c in log if k < 0.9 - 1e-9)
    assert all(c is None for k, c in log if k >= 0.9 - 1e-9)
    assert any(c is None for _, c in log) and any(c == "label" for _, c in log)


def test_restoration_keeps_fixed_bands_exactly_and_starts_at_k_start():
    path = make_path("smoothstep")
    transform = path.transform
    x0, x1 = pair()
    observed = transform.forward(x1)
    mask = (transform.band_index == 0).expand_as(observed)
    start = transform.inverse(torch.where(mask, observed, transform.forward(x0)))
    log = []
    result = KFlowSampler(path).sample(
        exact_velocity(path, x0, x1, log),
        start,
        k_start=1.0,
        method="rk4",
        steps_per_band=20,
        fixed_coeffs=observed,
        fixed_mask=mask,
    )
    assert min(k for k, _ in log) >= 1.0
    out = transform.forward(result.x)
    torch.testing.assert_close(out[mask], observed[mask], atol=1e-12, rtol=0)
    torch.testing.assert_close(result.x, x1, atol=1e-5, rtol=0)


def test_share_bands_makes_chosen_bands_identical():
    path = make_path()
    transform = path.transform
    x0, _ = pair()
    mixed = share_bands(x0, transform, bands=[1, 2], reference=2)
    c, c_orig = transform.forward(mixed), transform.forward(x0)
    high = transform.band_index >= 1
    assert torch.allclose(c[:, high], c_orig[2:3, high].expand(4, -1), atol=1e-12)
    torch.testing.assert_close(c[:, ~high], c_orig[:, ~high], atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "total,weights,expected",
    [(10, [1, 1], [5, 5]), (10, [3, 1], [7, 3]), (2, [1, 1, 1], [1, 1, 1]), (6, [0, 0, 1], [1, 1, 4])],
)
def test_allocate_steps(total, weights, expected):
    assert allocate_steps(total, weights) == expected


def test_bad_arguments_are_rejected():
    path = make_path()
    sampler = KFlowSampler(path)
    x0, x1 = pair()
    v = exact_velocity(path, x0, x1)
    with pytest.raises(ValueError, match="unknown method"):
        sampler.sample(v, x0, method="leapfrog")
    with pytest.raises(ValueError, match="k_start"):
        sampler.sample(v, x0, k_start=4.0)
    with pytest.raises(ValueError, match="steps_per_band"):
        sampler.sample(v, x0, steps_per_band=[1, 2])
