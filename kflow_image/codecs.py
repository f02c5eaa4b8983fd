"""Latent codecs: the autoencoder whose latent space K-Flow runs in (the paper's main image setting).

A codec maps images ``(B, C, H, W)`` in [-1, 1] to latents ``(B, *latent_shape)`` and back.
Three are shipped:

* :class:`PixelCodec` — the identity (pixel-space K-Flow, the default);
* :class:`AutoencoderCodec` — the in-project convolutional autoencoder
  (:class:`ConvAutoencoder`), trained by ``scripts/train_autoencoder.py`` and saved as a
  checkpoint; it lets the whole latent pipeline run offline (tests, demo, CPU);
* :class:`DiffusersCodec` — a diffusers ``AutoencoderKL`` (the SD-VAE family) read from a local
  folder the user supplies; nothing is downloaded.

Latents are scaled so that they have unit standard deviation on the training data (the
"scaling factor" of latent diffusion), so the N(0, I) source of the flow matches their scale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from kflow.training import CheckpointError, safe_load

AUTOENCODER_FORMAT = "kflow_image.ConvAutoencoder"
CODECS = ("pixel", "autoencoder", "diffusers")


@runtime_checkable
class LatentCodec(Protocol):
    """An image <-> latent map (see the module docstring)."""

    name: str

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images in [-1, 1] -> latents ``(B, *latent_shape)``."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, *latent_shape)`` -> images ``(B, C, H, W)`` (not clamped)."""

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """``(c, h, w)`` of the latent of one ``(C, H, W)`` image."""

    def fingerprint(self) -> str:
        """A short string that changes whenever the codec's weights or settings change."""


class PixelCodec(nn.Module):
    """Pixel space: encode and decode are the identity."""

    name = "pixel"

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        return tuple(int(s) for s in image_shape)

    def fingerprint(self) -> str:
        return "pixel"


def is_pixel(codec: LatentCodec | None) -> bool:
    """True for ``None`` or the identity codec."""
    return codec is None or isinstance(codec, PixelCodec)


class ConvAutoencoder(nn.Module):
    """A small deterministic convolutional autoencoder.

    ``num_down`` stride-2 stages halve the resolution each; the latent has ``latent_channels``
    channels. The decoder mirrors the encoder with nearest upsampling and ends in ``tanh``.

    Args:
        channels: image channels C.
        latent_channels: latent channels c.
        hidden: width of the first stage (doubled at each downsampling, capped at 4x).
        num_down: downsampling stages; latent side = image side / 2**num_down.
    """

    def __init__(self, channels: int = 1, latent_channels: int = 4, hidden: int = 32, num_down: int = 2):
        super().__init__()
        if num_down < 0 or latent_channels < 1 or hidden < 1 or channels < 1:
            raise ValueError(
                f"ConvAutoencoder: bad sizes channels={channels} latent_channels={latent_channels} "
                f"hidden={hidden} num_down={num_down}"
            )
        self.config = {"channels": channels, "latent_channels": latent_channels, "hidden": hidden, "num_down": num_down}
        widths = [hidden * min(2**i, 4) for i in range(num_down + 1)]
        enc: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.SiLU()]
        for i in range(num_down):
            enc += [
                nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1),
                nn.SiLU(),
                nn.Conv2d(widths[i + 1], widths[i + 1], 3, padding=1),
                nn.SiLU(),
            ]
        enc.append(nn.Conv2d(widths[-1], latent_channels, 1))
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, widths[-1], 3, padding=1), nn.SiLU()]
        for i in reversed(range(num_down)):
            dec += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(widths[i + 1], widths[i], 3, padding=1),
                nn.SiLU(),
                nn.Conv2d(widths[i], widths[i], 3, padding=1),
                nn.SiLU(),
            ]
        dec += [nn.Conv2d(widths[0], channels, 3, padding=1), nn.Tanh()]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        self.num_down = num_down

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, c, H / 2**num_down, W / 2**num_down)`` (unscaled)."""
        factor = 2**self.num_down
        if images.shape[-1] % factor or images.shape[-2] % factor:
            raise ValueError(
                f"ConvAutoencoder: image size {tuple(images.shape[-2:])} is not divisible by 2**num_down = {factor}"
            )
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, c, h, w)`` -> ``(B, C, h * 2**num_down, w * 2**num_down)`` in (-1, 1)."""
        return self.decoder(latents)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))


class AutoencoderCodec(nn.Module):
    """:class:`ConvAutoencoder` as a codec: ``encode = scale * ae.encode``, ``decode = ae.decode(z / scale)``.

    Args:
        autoencoder: the trained network.
        scale: latent scaling factor (1 / std of the training latents).
        source: where it was loaded from (for the fingerprint and messages).
    """

    name = "autoencoder"

    def __init__(self, autoencoder: ConvAutoencoder, scale: float = 1.0, source: str = ""):
        super().__init__()
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.scale, self.source = float(scale), source

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(images) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(latents / self.scale)

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        factor = 2**self.autoencoder.num_down
        return self.autoencoder.config["latent_channels"], int(h) // factor, int(w) // factor

    def fingerprint(self) -> str:
        return _state_fingerprint(self.autoencoder, {"scale": self.scale, **self.autoencoder.config})

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the checkpoint read by :func:`load_autoencoder` (atomic rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": AUTOENCODER_FORMAT,
            "version": 1,
            "config": dict(self.autoencoder.config),
            "scale": self.scale,
            "state_dict": self.autoencoder.state_dict(),
            "extra": extra or {},
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path


def load_autoencoder(path: str | Path, device: str | torch.device = "cpu") -> AutoencoderCodec:
    """Read a checkpoint written by ``scripts/train_autoencoder.py``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not an autoencoder checkpoint of this project.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"codec.path={path}: no autoencoder checkpoint there (train one with scripts/train_autoencoder.py)"
        )
    try:
        state = safe_load(path, "cpu", what="codec.path")
    except CheckpointError as err:  # corrupt / foreign file: one line, without torch's weights_only advice
        raise ValueError(str(err)) from None
    if not isinstance(state, dict) or state.get("format") != AUTOENCODER_FORMAT:
        raise ValueError(f"codec.path={path}: not a checkpoint of scripts/train_autoencoder.py")
    autoencoder = ConvAutoencoder(**state["config"])
    autoencoder.load_state_dict(state["state_dict"])
    return AutoencoderCodec(autoencoder, state["scale"], source=str(path)).to(device)


class DiffusersCodec(nn.Module):
    """A diffusers ``AutoencoderKL`` (e.g. the SD-VAE ``sd-vae-ft-ema``) from a local folder.

    ``encode(x) = (mean of q(z|x) - shift) * scaling_factor`` (or a posterior sample with
    ``sample_posterior``); ``decode(z) = vae.decode(z / scaling_factor + shift)``. Grey images
    are repeated to 3 channels when the VAE expects RGB, and decoded back to grey.

    Args:
        vae: the ``AutoencoderKL``.
        scaling_factor: latent scale; ``None`` takes ``vae.config.scaling_factor``.
        sample_posterior: encode with a sample of the posterior instead of its mean.
        source: the folder it came from.
    """

    name = "diffusers"

    def __init__(
        self, vae: nn.Module, scaling_factor: float | None = None, sample_posterior: bool = False, source: str = ""
    ):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.scaling_factor = float(
            scaling_factor if scaling_factor is not None else getattr(config, "scaling_factor", 1.0)
        )
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        self.sample_posterior, self.source = sample_posterior, source
        self.vae_channels = int(config.in_channels)
        self.factor = 2 ** (len(config.block_out_channels) - 1)
        self.latent_channels = int(config.latent_channels)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1 and self.vae_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        dist = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        z = dist.sample() if self.sample_posterior else dist.mean
        return ((z - self.shift_factor) * self.scaling_factor).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.float()

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        _, h, w = image_shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"codec=diffusers: image size {h}x{w} is not divisible by the VAE's factor {self.factor}")
        return self.latent_channels, int(h) // self.factor, int(w) // self.factor

    def fingerprint(self) -> str:
        return _state_fingerprint(
            self.vae, {"scale": self.scaling_factor, "shift": self.shift_factor, "sample": self.sample_posterior}
        )


def load_diffusers_vae(
    path: str | Path,
    scaling_factor: float | None = None,
    sample_posterior: bool = False,
    device: str | torch.device = "cpu",
) -> DiffusersCodec:
    """``AutoencoderKL.from_pretrained(path, local_files_only=True)`` as a codec (no download).

    ``path`` is a folder with ``config.json`` and the weights (``diffusion_pytorch_model.safetensors``),
    or a pipeline folder with a ``vae/`` sub-folder.
    """
    path = Path(path)
    if (path / "vae" / "config.json").is_file():
        path = path / "vae"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"codec.path={path}: no config.json of a diffusers AutoencoderKL there")
    try:
        from diffusers import AutoencoderKL
    except ImportError as err:
        raise ImportError("codec=diffusers needs the diffusers package: pip install 'kflow[image]'") from err
    vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
    return DiffusersCodec(vae, scaling_factor, sample_posterior, source=str(path)).to(device)


def build_codec(
    name: str,
    path: str | None = None,
    scaling_factor: float | None = None,
    sample_posterior: bool = False,
    device: str | torch.device = "cpu",
) -> LatentCodec:
    """The codec named ``name`` (``pixel``, ``autoencoder`` or ``diffusers``), in eval mode on ``device``."""
    if name not in CODECS:
        raise ValueError(f"codec.name={name!r}: choose one of {CODECS}")
    if name == "pixel":
        return PixelCodec()
    if not path:
        raise ValueError(
            f"codec={name} needs codec.path=/path/to/{'autoencoder.pt' if name == 'autoencoder' else 'vae'}"
        )
    if name == "autoencoder":
        return load_autoencoder(path, device)
    return load_diffusers_vae(path, scaling_factor, sample_posterior, device)


@torch.no_grad()
def encode_batches(
    codec: LatentCodec, images: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Encode ``(N, C, H, W)`` images in batches; latents ``(N, *latent_shape)`` on CPU (float32)."""
    out = [codec.encode(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else images.new_zeros((0, *codec.latent_shape(images.shape[1:])))


@torch.no_grad()
def decode_batches(
    codec: LatentCodec, latents: torch.Tensor, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Decode ``(N, *latent_shape)`` latents in batches; images ``(N, C, H, W)`` on CPU (float32)."""
    return torch.cat(
        [codec.decode(latents[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(latents), batch_size)]
    )


def _state_fingerprint(module: nn.Module, settings: dict) -> str:
    """sha1 over the settings and every parameter/buffer (first 12 hex digits)."""
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]
