"""VE / VP SDEs: marginals against the SDE's moment equations, DSM, reverse-time samplers."""

import pytest
import torch

from kflow.sde import VESDE, VPSDE, ReverseSDESampler, dsm_loss

DTYPE = torch.float64


def toy(batch=512, seed=0):
    """One 3-molecule toy configuration (3 centroids in 3D), repeated ``batch`` times."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, 3, 3, generator=g, dtype=DTYPE) * 2.0
    return x0.expand(batch, 3, 3).clone()


def test_marginals_hit_their_endpoints():
    x0 = toy(4)
    ve, vp = VESDE(0.01, 5.0), VPSDE(0.1, 20.0)
    zero, one = torch.zeros(4, dtype=DTYPE), torch.ones(4, dtype=DTYPE)
    mean, std = ve.marginal(x0, zero)
    torch.testing.assert_close(mean, x0)
    torch.testing.assert_close(std, torch.full_like(std, 0.01))
    assert torch.allclose(ve.marginal(x0, one)[1], torch.full((4,), 5.0, dtype=DTYPE))
    mean, std = vp.marginal(x0, zero)
    torch.testing.assert_close(mean, x0)
    assert float(std.abs().max()) == 0.0
    mean, std = vp.marginal(x0, one)
    assert float(mean.abs().max()) < 0.01 * float(x0.abs().max()) and torch.allclose(
        std, torch.ones_like(std), atol=1e-4
    )


@pytest.mark.parametrize("sde", [VESDE(0.01, 5.0), VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_marginal_solves_the_moment_equations_of_the_sde(sde):
    """Linear SDE: d mean/dt = f(mean, t) and d var/dt = 2 (df/dx) var + g^2."""
    x0 = toy(5)
    t = torch.tensor([0.05, 0.2, 0.5, 0.7, 0.95], dtype=DTYPE)
    h = 1e-6
    mean_p, std_p = sde.marginal(x0, t + h)
    mean_m, std_m = sde.marginal(x0, t - h)
    mean, std = sde.marginal(x0, t)
    torch.testing.assert_close((mean_p - mean_m) / (2 * h), sde.drift(mean, t), atol=1e-6, rtol=1e-6)
    slope = sde.drift(torch.ones(5, 1, dtype=DTYPE), t).squeeze(1)  # f is linear: f = slope * x
    dvar = (std_p**2 - std_m**2) / (2 * h)
    torch.testing.assert_close(dvar, 2 * slope * std**2 + sde.diffusion(t) ** 2, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("sde", [VESDE(0.01, 5.0), VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_score_target_is_the_gradient_of_the_log_marginal(sde):
    x0 = toy(3)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=DTYPE)
    sample = sde.perturb(x0, t, generator=torch.Generator().manual_seed(0))
    x = sample.x_t.clone().requires_grad_(True)
    mean, std = sde.marginal(x0, t)
    log_p = -((x - mean) ** 2).sum((1, 2)) / (2 * std**2)
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    torch.testing.assert_close(sample.score, grad, atol=1e-10, rtol=1e-10)
    assert float(dsm_loss(sample.score, sample)) < 1e-20
    assert float(dsm_loss(torch.zeros_like(x0), sample)) > 0.1
    mask = torch.zeros(3, 3, 1, dtype=torch.bool)
    mask[:, :2] = True
    wrong = sample.score.clone()
    wrong[:, 2] += 100.0  # error only in the masked-out rows
    assert float(dsm_loss(wrong, sample, mask=mask)) < 1e-20


def exact_score(sde, x0):
    def score(x, t):
        mean, std = sde.marginal(x0, t)
        return -(x - mean) / std.reshape(-1, 1, 1) ** 2

    return score


@pytest.mark.parametrize("method", ["euler_maruyama", "pc", "ode"])
@pytest.mark.parametrize("sde", [VESDE(0.01, 5.0), VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_reverse_sampling_with_the_exact_score_reaches_the_data(sde, method):
    x0 = toy()
    sampler = ReverseSDESampler(sde)
    g = torch.Generator().manual_seed(0)
    start = sde.prior_sample(x0.shape, generator=g, dtype=DTYPE)
    result = sampler.sample(exact_score(sde, x0), start, steps=200, method=method, generator=g)
    error = (result.x - x0).flatten(1).norm(dim=1)
    final_std = float(sde.marginal(x0, torch.tensor([sde.t_eps], dtype=DTYPE))[1])
    assert float(error.max()) < 0.1, f"worst sample {float(error.max()):.3g} from the data"
    assert float((result.x - x0).mean(0).abs().max()) < max(3 * final_std, 5e-3)
    assert result.nfe == (400 if method == "pc" else 200)


def test_stochastic_samplers_are_reproducible_with_a_generator():
    sde = VPSDE()
    x0 = toy(8)
    sampler = ReverseSDESampler(sde)
    runs = []
    for seed in (3, 3, 4):
        g = torch.Generator().manual_seed(seed)
        start = sde.prior_sample(x0.shape, generator=g, dtype=DTYPE)
        runs.append(
            sampler.sample(exact_score(sde, x0), start, steps=20, method="pc", generator=g, return_trajectory=True)
        )
    assert torch.equal(runs[0].x, runs[1].x) and not torch.equal(runs[0].x, runs[2].x)
    assert len(runs[0].trajectory) == 21 and runs[0].ts[0] == 1.0 and abs(runs[0].ts[-1] - sde.t_eps) < 1e-12


def test_bad_arguments_give_clear_errors():
    sampler = ReverseSDESampler(VESDE())
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown SDE sampling method"):
        sampler.sample(lambda x, t: x, x, method="ddim")
    with pytest.raises(ValueError, match="steps must be >= 1"):
        sampler.sample(lambda x, t: x, x, steps=0)
