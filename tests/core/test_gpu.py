"""The core on CUDA: transforms, path and sampler exactness, and a bf16 training step (``-m gpu``)."""

import pytest
import torch

from kflow.path import KAmplitudePath
from kflow.testing import assert_round_trip, assert_sampler_reaches_target, assert_velocity_on_current_band
from kflow.transforms import FourierTransform, GraphSpectralTransform, WaveletTransform

pytestmark = pytest.mark.gpu
DEVICE = "cuda"


@pytest.mark.parametrize(
    "make",
    [
        lambda: FourierTransform((1, 16, 16), num_bands=3),
        lambda: WaveletTransform((1, 16, 16), wavelet="db2", levels=2),
    ],
)
def test_image_transforms_round_trip_and_path_is_exact_on_cuda(make):
    transform = make().to(DEVICE)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64).to(DEVICE)
    x1 = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64).to(DEVICE)
    assert_round_trip(transform, x0)
    path = KAmplitudePath(transform)
    k = torch.tensor([0.3, 1.2, 1.7, 2.5], dtype=torch.float64, device=DEVICE)[: x0.shape[0]] % path.num_bands
    assert_velocity_on_current_band(path, x0, x1, k)
    assert_sampler_reaches_target(path, x0, x1, steps_per_band=8)


def test_graph_spectral_path_is_exact_on_cuda():
    g = torch.Generator().manual_seed(1)
    points = (4 * torch.randn(3, 17, 3, generator=g, dtype=torch.float64)).to(DEVICE)
    transform = GraphSpectralTransform(3)
    context = transform.basis(points)
    x0 = torch.randn(3, 17, 6, generator=g, dtype=torch.float64).to(DEVICE)
    x1 = torch.randn(3, 17, 6, generator=g, dtype=torch.float64).to(DEVICE)
    path = KAmplitudePath(transform)
    assert_velocity_on_current_band(
        path, x0, x1, torch.tensor([0.2, 1.5, 2.9], dtype=torch.float64, device=DEVICE), context
    )
    assert_sampler_reaches_target(path, x0, x1, context, steps_per_band=8)


def test_bf16_autocast_forward_backward_on_cuda():
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64)).to(DEVICE)
    x = torch.randn(32, 64, device=DEVICE)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x).float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
