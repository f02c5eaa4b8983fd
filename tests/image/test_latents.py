"""Latent store (memory-mapped, flips, reuse) and streaming fits equal to the in-memory ones."""

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from kflow.transforms import band_energy, coefficient_energy
from kflow.transforms.pca import PCATransform
from kflow_image.codecs import AutoencoderCodec, ConvAutoencoder
from kflow_image.data import load_digits, stack_dataset
from kflow_image.latents import (
    LatentDataset,
    SecondMoments,
    batch_source,
    cached_latents,
    encode_to_store,
    streaming_band_energy,
    streaming_coefficient_energy,
)
from kflow_image.train import TransformSpec, build_transform


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    return AutoencoderCodec(ConvAutoencoder(channels=1, latent_channels=2, hidden=8, num_down=1), scale=1.7)


@pytest.fixture(scope="module")
def small():
    images, labels = stack_dataset(load_digits().train, 150)
    return TensorDataset(images, labels)


def test_cached_latents_equal_on_the_fly_encoding(codec, small, tmp_path):
    images, labels = small.tensors
    store = encode_to_store(codec, small, tmp_path / "store", flip=True, batch_size=64)
    assert len(store) == 300 and store.latent_shape == (2, 4, 4)
    with torch.no_grad():
        direct = codec.encode(images)
        flipped = codec.encode(images.flip(-1))
    stored = torch.stack([store[i][0] for i in range(len(store))])
    torch.testing.assert_close(stored[:150], direct, rtol=0, atol=1e-6)
    torch.testing.assert_close(stored[150:], flipped, rtol=0, atol=1e-6)
    assert [int(store[i][1]) for i in (0, 7, 150, 157)] == [int(labels[0]), int(labels[7])] * 2
    batch = store.__getitems__([5, 1, 200])  # batched reads keep the requested order
    for (latent, label), i in zip(batch, [5, 1, 200]):
        torch.testing.assert_close(latent, store[i][0], rtol=0, atol=0)
        assert int(label) == int(store[i][1])
    torch.testing.assert_close(torch.cat(list(store.batches(64))), stored, rtol=0, atol=0)


def test_store_is_reused_and_incomplete_stores_are_refused(codec, small, tmp_path):
    lines = []
    first = cached_latents(codec, small, tmp_path, {"data": "digits"}, log=lines.append)
    second = cached_latents(codec, small, tmp_path, {"data": "digits"}, log=lines.append)
    assert first.folder == second.folder and lines[0].startswith("latents: encoding")
    assert lines[1].startswith("latents: reusing")
    other = cached_latents(codec, small, tmp_path, {"data": "digits"}, flip=True, log=lines.append)
    assert other.folder != first.folder and len(other) == 2 * len(first)
    meta = json.loads((first.folder / "meta.json").read_text())
    meta["complete"] = False
    (first.folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="incomplete"):
        LatentDataset(first.folder)


@pytest.mark.parametrize("centered", [True, False])
def test_streaming_pca_equals_in_memory_fit(centered):
    torch.manual_seed(1)
    data = torch.randn(400, 2, 3, 3, dtype=torch.float64) * torch.linspace(0.2, 3.0, 18).reshape(2, 3, 3) + 0.5
    full = PCATransform.fit(data, num_bands=3, centered=centered, dtype=torch.float64)
    moments = SecondMoments.of(batch_source(data, batch_size=37), 18)
    streamed = PCATransform.from_moments(
        moments.count, moments.sum, moments.outer, (2, 3, 3), 3, centered=centered, dtype=torch.float64
    )
    torch.testing.assert_close(streamed.components, full.components, atol=1e-9, rtol=0)
    torch.testing.assert_close(streamed.explained_variance, full.explained_variance, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(streamed.mean, full.mean)
    assert torch.equal(streamed.band_index, full.band_index)
    # build_transform streams too, from a tensor or a batch source
    spec = TransformSpec("pca", num_bands=3, centered=centered)
    built = build_transform(spec, (2, 3, 3), batch_source(data.float(), batch_size=50))
    torch.testing.assert_close(built.components.double(), full.components, atol=1e-5, rtol=0)


def test_streaming_energies_equal_stacked(small):
    images = small.tensors[0].double()
    transform = build_transform(TransformSpec("fourier", num_bands=3), (1, 8, 8))
    source = batch_source(small, batch_size=32)
    torch.testing.assert_close(streaming_coefficient_energy(transform, source), coefficient_energy(transform, images))
    torch.testing.assert_close(streaming_band_energy(transform, source), band_energy(transform, images))
    energy_grouped = build_transform(TransformSpec("fourier", num_bands=3, grouping="equal_energy"), (1, 8, 8), source)
    assert energy_grouped.num_bands == 3
