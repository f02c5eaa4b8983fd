"""Gaussian conditional paths (VE, VP) and their schedules: endpoints, velocities, exact transport."""

import math

import pytest
import torch

from kflow.gaussian_paths import VEPath, VPPath
from kflow.schedules import VESchedule, VPSchedule

DTYPE = torch.float64


def data(batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 3, generator=g, dtype=DTYPE), torch.randn(batch, 3, 3, generator=g, dtype=DTYPE)


def test_schedules_closed_forms():
    s = torch.linspace(0, 1, 11, dtype=DTYPE)
    ve = VESchedule(0.01, 5.0)
    torch.testing.assert_close(ve.sigma(s)[[0, -1]], torch.tensor([0.01, 5.0], dtype=DTYPE))
    vp = VPSchedule(0.1, 20.0)
    torch.testing.assert_close(vp.integral(s[-1:]), torch.tensor([10.05], dtype=DTYPE))
    torch.testing.assert_close(vp.alpha(s) ** 2 + vp.std(s) ** 2, torch.ones_like(s))
    h = 1e-6
    inner = s[1:-1]
    for value, derivative in ((ve.sigma, ve.dsigma), (vp.alpha, vp.dalpha), (vp.integral, vp.beta)):
        fd = (value(inner + h) - value(inner - h)) / (2 * h)
        torch.testing.assert_close(derivative(inner), fd, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        VESchedule(1.0, 0.5)
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        VPSchedule(3.0, 1.0)


@pytest.mark.parametrize("path", [VEPath(0.01, 5.0), VPPath(0.1, 20.0)], ids=["ve", "vp"])
def test_endpoints(path):
    x1, eps = data()
    one, zero = torch.ones(6, dtype=DTYPE), torch.zeros(6, dtype=DTYPE)
    end = path.sample(x1, one, noise=eps).x_t
    start = path.sample(x1, zero, noise=eps).x_t
    if isinstance(path, VPPath):
        torch.testing.assert_close(end, x1, atol=1e-12, rtol=0)
        alpha1 = math.exp(-(0.1 + 20.0) / 4)
        torch.testing.assert_close(start, alpha1 * x1 + math.sqrt(1 - alpha1**2) * eps, atol=1e-12, rtol=0)
        assert path.prior_std == 1.0
    else:
        torch.testing.assert_close(end, x1 + 0.01 * eps, atol=1e-12, rtol=0)
        torch.testing.assert_close(start, x1 + 5.0 * eps, atol=1e-12, rtol=0)
        assert path.prior_std == 5.0


@pytest.mark.parametrize("path", [VEPath(0.01, 5.0), VPPath(0.1, 20.0)], ids=["ve", "vp"])
def test_velocity_is_the_time_derivative_and_matches_the_closed_form(path):
    x1, eps = data()
    t = torch.tensor([0.01, 0.2, 0.45, 0.6, 0.9, 0.99], dtype=DTYPE)
    h = 1e-6
    sample = path.sample(x1, t, noise=eps)
    fd = (path.sample(x1, t + h, noise=eps).x_t - path.sample(x1, t - h, noise=eps).x_t) / (2 * h)
    torch.testing.assert_close(sample.u_t, fd, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(path.conditional_velocity(sample.x_t, x1, t), sample.u_t, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("path", [VEPath(0.01, 5.0), VPPath(0.1, 20.0, t_eps=1e-4)], ids=["ve", "vp"])
def test_integrating_the_exact_conditional_velocity_reaches_the_data(path):
    from torchdiffeq import odeint

    x1, eps = data()
    x0 = path.sample(x1, torch.zeros(6, dtype=DTYPE), noise=eps).x_t
    t_end = 1.0 - path.t_eps

    def field(t, x):
        return path.conditional_velocity(x, x1, t.expand(6))

    times = torch.tensor([0.0, t_end], dtype=DTYPE)
    out = odeint(field, x0, times, method="dopri5", rtol=1e-9, atol=1e-10)[-1]
    torch.testing.assert_close(
        out, path.sample(x1, torch.full((6,), t_end, dtype=DTYPE), noise=eps).x_t, atol=1e-6, rtol=0
    )
    residual = 0.01 if isinstance(path, VEPath) else path.schedule.std(torch.tensor(1e-4, dtype=DTYPE))
    assert float((out - x1).abs().max()) <= 4 * float(residual) + 1e-6


def test_prior_sample_is_reproducible_with_a_generator_and_has_the_prior_scale():
    path = VEPath(0.01, 3.0)
    a = path.prior_sample((4000, 3), generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    b = path.prior_sample((4000, 3), generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 3.0) < 0.1
    x1, _ = data()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(path.sample(x1, 0.3, generator=g1).x_t, path.sample(x1, 0.3, generator=g2).x_t)
    with pytest.raises(ValueError, match="noise shape"):
        path.sample(x1, 0.3, noise=torch.zeros(2, dtype=DTYPE))
