"""The path contract on every shipped transform, through the shipped assertions."""

import pytest
import torch

from kflow.path import KAmplitudePath
from kflow.testing import (
    assert_path_endpoints,
    assert_sampler_reaches_target,
    assert_velocity_matches_finite_difference,
    assert_velocity_on_current_band,
)
from kflow.transforms import FourierTransform, GraphSpectralTransform, PCATransform, WaveletTransform

D = torch.float64


def cases():
    g = torch.Generator().manual_seed(0)
    yield "fourier", FourierTransform((2, 8, 8), num_bands=3), (4, 2, 8, 8), None
    yield "wavelet", WaveletTransform((1, 8, 8), wavelet="db2", levels=2), (4, 1, 8, 8), None
    pca = PCATransform.fit(torch.randn(64, 12, generator=g, dtype=D).cumsum(-1), num_bands=3)
    yield "pca", pca, (4, 12), None
    graph = GraphSpectralTransform(num_bands=3)
    yield "graph", graph, (4, 17, 6), graph.basis(torch.randn(4, 17, 3, generator=g, dtype=D) * 3)


@pytest.mark.parametrize("name,transform,shape,context", list(cases()), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("bump", ["linear", "smoothstep"])
def test_path_contract(name, transform, shape, context, bump):
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(*shape, generator=g, dtype=D), torch.randn(*shape, generator=g, dtype=D)
    path = KAmplitudePath(transform, bump=bump)
    assert path.num_bands == 3
    k = torch.tensor([0.3, 1.2, 1.7, 2.5], dtype=D)
    assert_path_endpoints(path, x0, x1, context)
    assert_velocity_matches_finite_difference(path, x0, x1, k, context)
    assert_velocity_on_current_band(path, x0, x1, k, context)
    assert_sampler_reaches_target(path, x0, x1, context, atol=1e-5)
