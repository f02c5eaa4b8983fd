"""Codecs: pixel identity, the in-project autoencoder (train, scale, save/load), diffusers AutoencoderKL."""

import pytest
import torch

from kflow_image.autoencoder import AutoencoderSettings, latent_std, train_autoencoder
from kflow_image.codecs import AutoencoderCodec, ConvAutoencoder, LatentCodec, PixelCodec, build_codec, load_autoencoder
from kflow_image.data import load_digits, stack_dataset


@pytest.fixture(scope="module")
def digits():
    return load_digits()


@pytest.fixture(scope="module")
def trained(digits):
    torch.manual_seed(0)
    return train_autoencoder(
        digits, AutoencoderSettings(latent_channels=2, hidden=8, num_down=1, steps=60, batch_size=64, lr=3e-3), seed=0
    )


def test_pixel_codec_is_the_identity():
    x = torch.randn(3, 1, 8, 8)
    codec = PixelCodec()
    assert isinstance(codec, LatentCodec)
    assert codec.encode(x) is x and codec.decode(x) is x and codec.latent_shape((1, 8, 8)) == (1, 8, 8)
    assert isinstance(build_codec("pixel"), PixelCodec)


def test_autoencoder_shapes_and_scale_cancel():
    torch.manual_seed(0)
    ae = ConvAutoencoder(channels=1, latent_channels=3, hidden=8, num_down=2).eval()
    codec = AutoencoderCodec(ae, scale=2.5)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    z = codec.encode(x)
    assert z.shape == (4, *codec.latent_shape((1, 16, 16))) == (4, 3, 4, 4)
    torch.testing.assert_close(z, 2.5 * ae.encode(x))
    torch.testing.assert_close(codec.decode(z), ae(x))  # the scale cancels in a round trip
    with pytest.raises(ValueError, match="divisible"):
        codec.encode(torch.zeros(1, 1, 10, 10))


def test_trained_autoencoder_round_trip(digits, trained, tmp_path):
    codec = trained.codec
    # the scaling factor gives the training latents unit standard deviation
    assert latent_std(codec.autoencoder, digits.train) * codec.scale == pytest.approx(1.0, rel=1e-6)
    images, _ = stack_dataset(digits.reference)  # the same images as reference_mse
    with torch.no_grad():
        mse = (codec.decode(codec.encode(images)) - images).pow(2).mean().item()
        untrained = ConvAutoencoder(1, 2, 8, 1).eval()
        mse_untrained = (untrained(images) - images).pow(2).mean().item()
    assert mse == pytest.approx(trained.reference_mse, rel=1e-5)
    assert mse < 0.5 * mse_untrained
    path = codec.save(tmp_path / "ae.pt", extra={"data": "digits"})
    loaded = build_codec("autoencoder", str(path))
    assert loaded.scale == codec.scale and loaded.fingerprint() == codec.fingerprint()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(images), codec.encode(images), rtol=0, atol=0)


def test_autoencoder_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="codec.path=.*missing.pt"):
        load_autoencoder(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint of scripts/train_autoencoder.py"):
        load_autoencoder(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="codec=autoencoder needs codec.path"):
        build_codec("autoencoder")


def tiny_vae(in_channels: int = 3):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=in_channels,
        out_channels=in_channels,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        scaling_factor=0.5,
        shift_factor=0.1,
    )


def test_diffusers_codec_from_a_local_folder(tmp_path):
    vae = tiny_vae().eval()
    vae.save_pretrained(tmp_path / "vae")
    codec = build_codec("diffusers", str(tmp_path))  # a pipeline folder with vae/ works too
    assert codec.latent_shape((3, 16, 16)) == (4, 8, 8)
    assert codec.scaling_factor == 0.5 and codec.shift_factor == 0.1
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        z = codec.encode(x)
        torch.testing.assert_close(z, (mean - 0.1) * 0.5)
        torch.testing.assert_close(codec.decode(z), vae.decode(mean).sample, atol=1e-5, rtol=1e-5)
        grey = codec.encode(x[:, :1])  # grey images are repeated to RGB
        torch.testing.assert_close(grey, codec.encode(x[:, :1].expand(-1, 3, -1, -1)))
    override = build_codec("diffusers", str(tmp_path / "vae"), scaling_factor=2.0)
    with torch.no_grad():
        torch.testing.assert_close(override.encode(x), (mean - 0.1) * 2.0)
    assert override.fingerprint() != codec.fingerprint()
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_codec("diffusers", str(tmp_path / "nothing"))


def test_corrupt_autoencoder_file_is_one_line_naming_it(tmp_path):
    from kflow_image.codecs import load_autoencoder

    bad = tmp_path / "autoencoder-digits.pt"
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=f"codec.path {bad} cannot be read") as info:
        load_autoencoder(bad)
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
