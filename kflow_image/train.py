"""Library-level glue for images (no Hydra): transform choice, the K-Flow loss, generation.

``build_transform`` turns a name into the ``F`` of K-Flow (``none`` is the identity with one
band, i.e. plain flow matching through exactly the same path, loss and sampler code).
``ImageFlowLoss`` is the ``loss_fn(model, batch)`` handed to :class:`kflow.training.Trainer`.
``generate`` draws images with :class:`kflow.sampling.KFlowSampler`, with classifier-free
guidance, condition dropping and noise splitting as options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from kflow.loss import flow_matching_loss, sample_k
from kflow.path import KAmplitudePath
from kflow.sampling import KFlowSampler, allocate_steps, share_bands
from kflow.training.device import unwrap_model
from kflow.transforms.base import KTransform
from kflow_image.codecs import LatentCodec, PixelCodec, is_pixel
from kflow_image.latents import BatchSource, SecondMoments, batch_source, streaming_coefficient_energy

TRANSFORMS = ("fourier", "wavelet", "pca", "none")


@dataclass
class TransformSpec:
    """Which transform and band layout to use.

    Attributes:
        name: ``fourier``, ``wavelet``, ``pca`` or ``none`` (plain flow matching, K = 1).
        num_bands: bands K; ``None`` means one band per coefficient scale (per distinct
            Fourier radius, per wavelet level, per PCA component).
        grouping: band grouping (``equal_radius``, ``equal_count``, ``equal_energy``); ``None``
            picks :data:`DEFAULT_GROUPING` for the transform.
        wavelet: pywavelets name for ``wavelet``; ``db6`` as in the paper. Periodized: H and W must
            be divisible by ``2**levels``; filters longer than the signal wrap around.
        levels: wavelet decomposition levels (num_bands = levels + 1).
        bump: path bump ``linear``, ``smoothstep`` or ``cosine``.
        reverse: move bands from high to low scale.
        centered: PCA only: order components by centred variance (classic PCA) or, if False
            (default, measured better on digits, see docs/image.md), by raw second moment
            (constant-background pixels then come first, not last).
    """

    name: str = "fourier"
    num_bands: int | None = 3
    grouping: str | None = None
    wavelet: str = "db6"
    levels: int = 2
    bump: str = "linear"
    reverse: bool = False
    centered: bool = False


DEFAULT_GROUPING = {"fourier": "equal_radius", "wavelet": "equal_count", "pca": "equal_count", "none": None}


def build_transform(
    spec: TransformSpec,
    data_shape: Sequence[int],
    train_data: torch.Tensor | BatchSource | None = None,
    save_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> KTransform:
    """Instantiate the transform named by ``spec``.

    Fits (the PCA basis, ``equal_energy`` band edges) stream over batches, so the data set is
    never stacked: pass a tensor, or a re-iterable batch source such as
    :func:`kflow_image.latents.batch_source` over a latent store.

    Args:
        spec: the :class:`TransformSpec`.
        data_shape: ``(C, H, W)`` of one (latent) image.
        train_data: training images ``(N, C, H, W)`` or a source of such batches; required for
            ``pca`` (basis fit) and for ``equal_energy`` grouping.
        save_dir: where ``pca`` saves its basis (``pca_basis.pt``).
        device: device of the transform's tensors (and of the fits).
    """
    if spec.name not in TRANSFORMS:
        raise ValueError(f"transform: unknown name {spec.name!r}; choose from {TRANSFORMS}")
    data_shape = tuple(int(s) for s in data_shape)
    grouping = spec.grouping or DEFAULT_GROUPING[spec.name]
    if isinstance(train_data, torch.Tensor):
        train_data = batch_source(train_data)
    if grouping == "equal_energy" and train_data is None:
        raise ValueError(f"transform: {spec.name} with equal_energy grouping needs train_data")
    return _TRANSFORM_BUILDERS[spec.name](spec, data_shape, grouping, train_data, save_dir, device)


def _identity(spec: TransformSpec, data_shape: tuple[int, ...], grouping, train_data, save_dir, device) -> KTransform:
    """``none``: one band holding every coefficient (plain flow matching)."""
    from kflow.transforms.matrix import IdentityTransform

    return IdentityTransform(data_shape)


def _fourier(spec: TransformSpec, data_shape: tuple[int, ...], grouping, train_data, save_dir, device) -> KTransform:
    """``fourier``: radial-frequency bands (``equal_energy`` edges from the data's coefficient energy)."""
    from kflow.transforms import FourierTransform

    energy = None
    if grouping == "equal_energy":
        probe = FourierTransform(data_shape, num_bands=1, device=device)
        energy = streaming_coefficient_energy(probe, train_data, device)
    return FourierTransform(data_shape, num_bands=spec.num_bands, grouping=grouping, energy=energy, device=device)


def _wavelet(spec: TransformSpec, data_shape: tuple[int, ...], grouping, train_data, save_dir, device) -> KTransform:
    """``wavelet``: periodized ``spec.wavelet`` with ``spec.levels`` levels, at most ``levels + 1`` bands."""
    from kflow.transforms.wavelet import WaveletTransform

    if spec.num_bands is not None and spec.num_bands > spec.levels + 1:
        raise ValueError(
            f"transform: wavelet with levels={spec.levels} has at most {spec.levels + 1} bands, "
            f"got num_bands={spec.num_bands}"
        )
    energy = None
    if grouping == "equal_energy":
        probe = WaveletTransform(data_shape, wavelet=spec.wavelet, levels=spec.levels, device=device)
        energy = streaming_coefficient_energy(probe, train_data, device)
    return WaveletTransform(
        data_shape,
        wavelet=spec.wavelet,
        levels=spec.levels,
        num_bands=spec.num_bands,
        grouping=grouping,
        energy=energy,
        device=device,
    )


def _pca(spec: TransformSpec, data_shape: tuple[int, ...], grouping, train_data, save_dir, device) -> KTransform:
    """``pca``: the basis fitted by streaming second moments over ``train_data`` (saved in ``save_dir``)."""
    from kflow.transforms.pca import PCATransform

    if train_data is None:
        raise ValueError("transform: pca needs train_data to fit its basis")
    moments = SecondMoments.of(train_data, math.prod(data_shape), device)
    transform = PCATransform.from_moments(
        moments.count,
        moments.sum,
        moments.outer,
        data_shape,
        spec.num_bands,
        grouping=grouping,
        centered=spec.centered,
        dtype=torch.float32,
        device=device,
    )
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        transform.save(Path(save_dir) / "pca_basis.pt")
    return transform


_TRANSFORM_BUILDERS = {"none": _identity, "fourier": _fourier, "wavelet": _wavelet, "pca": _pca}
"""``TransformSpec.name`` -> its builder (``TRANSFORMS`` names the same keys)."""


class ImageFlowLoss:
    """``loss_fn(model, batch)`` for :class:`kflow.training.Trainer`: conditional FM along k.

    Draws ``x0 ~ N(0, I)``, ``k ~ sample_k``, builds ``path.sample(x0, x1, k)`` and regresses
    the model's ``v(x_k, k / K, y)`` on ``dx_k`` (label dropout happens inside the DiT). The
    MoE balance loss is added with weight ``balance_weight``.

    Args:
        path: the K-amplitude path.
        conditional: pass labels to the model (else ``y=None``).
        band_probs: optional ``(K,)`` weights for drawing the band of ``k``.
        balance_weight: weight of the MoE load-balancing loss.
        codec: latent codec (default pixel space).
    """

    def __init__(
        self,
        path: KAmplitudePath,
        conditional: bool = True,
        band_probs: torch.Tensor | None = None,
        balance_weight: float = 0.01,
        codec: LatentCodec | None = None,
    ):
        self.path, self.conditional, self.band_probs = path, conditional, band_probs
        self.balance_weight = balance_weight
        self.codec = codec if codec is not None else PixelCodec()

    def __call__(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on one batch.

        Args:
            model: the (possibly DDP-wrapped) DiT.
            batch: ``(images (B, C, H, W) in [-1, 1], labels (B,) long)``.

        Returns:
            ``(loss, {"fm": flow-matching MSE, "balance": MoE balance loss})``.
        """
        images, labels = batch
        device = next(model.parameters()).device
        with torch.no_grad():
            x1 = self.codec.encode(images.to(device))
        x0 = torch.randn_like(x1)
        k = sample_k(x1.shape[0], self.path.num_bands, self.band_probs, device=device, dtype=x1.dtype)
        sample = self.path.sample(x0, x1, k)
        y = labels.to(device) if self.conditional else None
        fm = flow_matching_loss(model(sample.x_k, k / self.path.num_bands, y), sample)
        balance = unwrap_model(model).balance_loss
        loss = fm + self.balance_weight * balance if balance.requires_grad else fm
        return loss, {"fm": fm.item(), "balance": balance.detach().item()}


def velocity_fn_for(model: nn.Module, cfg_scale: float = 1.0, project_to_band: KAmplitudePath | None = None):
    """Wrap a DiT as the sampler's ``velocity_fn(x, s, y)`` with classifier-free guidance.

    Args:
        model: the DiT.
        cfg_scale: guidance scale.
        project_to_band: if a path is given, the velocity is projected onto the coefficients
            of the band moving at ``k = s K`` (the true path velocity is zero elsewhere), so
            bands not yet reached stay exactly at the source and finished bands stay fixed.
    """
    net = unwrap_model(model)

    def velocity(x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        v = net.forward_with_cfg(x, s, y, cfg_scale)
        if project_to_band is None:
            return v
        return project_to_band.project_to_band(v, s * project_to_band.num_bands)

    return velocity


@dataclass
class SamplerSpec:
    """How to integrate.

    Attributes:
        method: ``euler``, ``heun``, ``rk4`` or ``dopri5``.
        total_steps: steps over the whole k range, split evenly over the K bands (so the
            NFE budget is the same for every K; at least one step per band).
        cfg_scale: classifier-free guidance scale (1 = plain conditional).
        drop_cond_after: fraction of K after which the class is dropped (``None`` = never).
        project_to_band: keep only the moving band's part of the predicted velocity.
        band_weights: split ``total_steps`` over bands in proportion to these ``(K,)`` weights
            (e.g. band energies of the data, the paper's energy-aware allocation); ``None`` = evenly.
    """

    method: str = "euler"
    total_steps: int = 30
    cfg_scale: float = 1.0
    drop_cond_after: float | None = None
    project_to_band: bool = False
    band_weights: Sequence[float] | None = None


@dataclass
class GenerationResult:
    """Generated images.

    Attributes:
        images: ``(N, C, H, W)`` on CPU, clamped to [-1, 1].
        labels: requested labels ``(N,)`` (or ``None`` if unconditional).
        nfe: velocity evaluations per sample (a CFG evaluation counts once).
        noise: the source draws ``(N, *data_shape)`` actually used (after any band sharing).
        trajectory: decoded states after every step ``(N, S + 1, C, H, W)`` (unclamped), if asked.
        ks: the k of every trajectory entry, if asked.
        latents: the final states in flow space ``(N, *data_shape)`` (before decoding).
        latent_trajectory: states in flow space ``(N, S + 1, *data_shape)`` (equals ``trajectory``
            in pixel space), if asked.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    nfe: int
    noise: torch.Tensor = field(repr=False)
    trajectory: torch.Tensor | None = field(default=None, repr=False)
    ks: list[float] | None = None
    latents: torch.Tensor | None = field(default=None, repr=False)
    latent_trajectory: torch.Tensor | None = field(default=None, repr=False)


def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """``(N,)`` labels cycling 0..num_classes-1, so every class gets N / num_classes samples."""
    return torch.arange(num_samples) % num_classes


@torch.no_grad()
def generate(
    model: nn.Module,
    path: KAmplitudePath,
    num_samples: int,
    data_shape: Sequence[int],
    sampler: SamplerSpec | None = None,
    labels: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    shared_bands: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    codec: LatentCodec | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
) -> GenerationResult:
    """Sample images by integrating the learned velocity from k = 0 to K.

    Args:
        model: a DiT (or anything with ``forward_with_cfg``).
        path: the path the model was trained on.
        num_samples: N.
        data_shape: ``(C, H, W)`` (latent shape with a codec).
        sampler: integration settings (default :class:`SamplerSpec`).
        labels: requested classes ``(N,)`` or ``None`` (unconditional).
        noise: source draws ``(N, *data_shape)``; drawn from ``seed`` if ``None``.
        shared_bands: noise splitting: these bands of the source are copied from sample 0
            to all others (see :func:`kflow.sampling.share_bands`).
        seed: seed of the source draws.
        batch_size: samples integrated at once.
        device: where to integrate.
        codec: latent codec (default pixel space).
        return_trajectory: keep the (decoded) states after every step in ``trajectory``.
        progress: show a progress bar over sample batches.
    """
    from tqdm.auto import tqdm

    model.eval()
    sampler = sampler if sampler is not None else SamplerSpec()
    codec = codec if codec is not None else PixelCodec()
    if noise is None:
        noise = torch.randn(num_samples, *data_shape, generator=torch.Generator().manual_seed(seed))
    if shared_bands:
        noise = share_bands(noise.to(device), path.transform, shared_bands).cpu()
    steps = allocate_steps(sampler.total_steps, sampler.band_weights or [1.0] * path.num_bands)
    velocity = velocity_fn_for(model, sampler.cfg_scale, path if sampler.project_to_band else None)
    run = partial(_sample_batch, KFlowSampler(path), velocity, sampler, steps, codec, return_trajectory)
    batches = [
        run(noise[start : start + batch_size].to(device), None if labels is None else labels[start : start + batch_size].to(device))
        for start in tqdm(range(0, num_samples, batch_size), desc="sampling", disable=not progress, leave=False)
    ]  # fmt: skip
    trajectory = torch.cat([b.trajectory for b in batches]) if return_trajectory else None
    latent_trajectory = torch.cat([b.latent_trajectory for b in batches]) if return_trajectory else None
    images, latents = torch.cat([b.images for b in batches]), torch.cat([b.latents for b in batches])
    last = batches[-1]
    return GenerationResult(images, labels, last.nfe, noise, trajectory, last.ks, latents, latent_trajectory)


class _Batch(NamedTuple):
    """One batch of :func:`generate`: latents and decoded images ``(n, ...)``, NFE, trajectories ``(n, T, ...)``."""

    latents: torch.Tensor
    images: torch.Tensor
    nfe: int
    latent_trajectory: torch.Tensor | None
    trajectory: torch.Tensor | None
    ks: Any


def _sample_batch(
    kflow_sampler: KFlowSampler,
    velocity,
    sampler: SamplerSpec,
    steps: list[int],
    codec: LatentCodec,
    return_trajectory: bool,
    x0: torch.Tensor,
    y: torch.Tensor | None,
) -> _Batch:
    """Integrate one batch of source draws ``x0`` ``(n, *data_shape)`` (labels ``y``) and decode it."""
    result = kflow_sampler.sample(
        velocity,
        x0,
        cond=y,
        method=sampler.method,
        steps_per_band=steps,
        drop_cond_after=sampler.drop_cond_after,
        return_trajectory=return_trajectory,
    )
    images = codec.decode(result.x).clamp(-1, 1).cpu()
    if not return_trajectory:
        return _Batch(result.x.cpu(), images, result.nfe, None, None, None)
    states = torch.stack([state.cpu() for state in result.trajectory], dim=1)
    decoded = states if is_pixel(codec) else torch.stack([codec.decode(x).cpu() for x in result.trajectory], dim=1)
    return _Batch(result.x.cpu(), images, result.nfe, states, decoded, result.ks)
