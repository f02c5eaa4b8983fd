"""Pixel-space data consistency of restorations (what lets latent restoration keep the observation)."""

import torch

from kflow_image.metrics import psnr
from kflow_image.restoration import downsample, gaussian_blur, observe, project_to_observation


def test_projection_reproduces_the_observation_and_keeps_consistent_images():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1
    guess = torch.rand(4, 1, 16, 16, generator=g) * 2 - 1  # a wrong "generated" image
    sr = observe(clean, "super_resolution", factor=2)
    projected = project_to_observation(guess, sr)
    assert torch.allclose(downsample(projected, 2), sr.degraded, atol=1e-6)  # exactly what was observed
    assert torch.allclose(project_to_observation(clean, sr), clean, atol=1e-6)  # the truth is a fixed point
    assert psnr(projected, clean).mean() > psnr(guess, clean).mean()
    blur = observe(clean, "deblur", sigma=1.0)
    projected = project_to_observation(guess, blur)
    assert (gaussian_blur(projected, 1.0) - blur.degraded).abs().max() < 0.05
    assert torch.allclose(project_to_observation(clean, blur), clean, atol=1e-5)
    assert psnr(projected, clean).mean() > psnr(guess, clean).mean() + 3
