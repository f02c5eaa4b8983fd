"""The figures of ``scripts/sample_image.py``: one function per mode, chosen from :data:`SAMPLING_MODES`.

Every mode takes the loaded run and sampler (:class:`ModeContext`) and its own options group of
:class:`~kflow_image.config.SampleRunConfig` (``grid.*``, ``noise_split.*``, ...), writes
``<out_dir>/<mode>...png`` and returns what the script prints (NFE, and PSNR/SSIM for
``restore``). :func:`run_sampling_mode` is the script's one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kflow.training import ConfigError
from kflow_image.codecs import LatentCodec, decode_batches
from kflow_image.config import DropCondMode, EditMode, GridMode, NoiseSplitMode, RestoreMode, SampleRunConfig
from kflow_image.data import stack_dataset
from kflow_image.editing import edit_sweep
from kflow_image.experiment import LoadedRun, load_run, sampler_spec
from kflow_image.plots import save_grid
from kflow_image.restoration import fm_projection_restore, kflow_restore, observe, score
from kflow_image.steering import kept_and_dropped, noise_split
from kflow_image.train import GenerationResult, SamplerSpec, generate


@dataclass
class ModeContext:
    """What every mode works with.

    Attributes:
        run: the loaded run (model, path, data, codec).
        sampler: the run's ``sample.*`` with the script's overrides.
        out_dir: where the PNGs go.
        seed: noise seed.
        device: where to sample.
    """

    run: LoadedRun
    sampler: SamplerSpec
    out_dir: Path
    seed: int
    device: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` of the flow's space (latent shape with a codec)."""
        return self.run.data.data_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.run.splits.image_shape

    @property
    def codec(self) -> LatentCodec:
        return self.run.codec

    @property
    def classes(self) -> int:
        return self.run.splits.num_classes

    def generate(self, n: int, labels: torch.Tensor | None, **options: Any) -> GenerationResult:
        """``n`` samples of the run with this context's sampler, seed, device and codec."""
        run = self.run
        return generate(
            run.model, run.path, n, self.shape, self.sampler, labels=labels, device=self.device, codec=self.codec,
            **{"seed": self.seed, **options},
        )  # fmt: skip


def class_rows(num_classes: int, per_class: int) -> torch.Tensor | None:
    """Labels laid out one class per grid row ``(num_classes * per_class,)``, or None for unconditional runs."""
    return torch.arange(num_classes).repeat_interleave(per_class) if num_classes > 1 else None


def grid_mode(ctx: ModeContext, options: GridMode) -> dict[str, Any]:
    """``grid.png``: one row per class (``per_class`` samples), or 10 rows of 10 for unconditional runs."""
    per = options.per_class
    labels = class_rows(ctx.classes, per)
    n = len(labels) if labels is not None else 100
    result = ctx.generate(n, labels, progress=True)
    nrow = per if labels is not None else 10
    rows = [f"class {c}" for c in range(ctx.classes)] if labels is not None else None
    cols = [f"#{j}" for j in range(nrow)]
    save_grid(result.images, ctx.out_dir / "grid.png", nrow=nrow, row_labels=rows, col_labels=cols)
    return {"nfe": result.nfe}


def noise_split_mode(ctx: ModeContext, options: NoiseSplitMode) -> dict[str, Any]:
    """``noise_split_<direction>.png``: each row shares one noise draw's high (or low) bands."""
    rows, classes, run = [], ctx.classes, ctx.run
    for r in range(options.rows):
        labels = torch.full((options.per_row,), r % classes) if classes > 1 else None
        result = noise_split(
            run.model, run.path, options.per_row, ctx.shape, options.direction, options.split, ctx.sampler,
            labels=labels, seed=ctx.seed + r, device=ctx.device, codec=ctx.codec,
        )  # fmt: skip
        rows.append(result.images)
    shared = "bands >= split shared" if options.direction == "share_high" else "bands < split shared"
    save_grid(
        torch.cat(rows),
        ctx.out_dir / f"noise_split_{options.direction}.png",
        nrow=options.per_row,
        row_labels=[f"draw {r}" + (f" c{r % classes}" if classes > 1 else "") for r in range(options.rows)],
        title=f"{options.direction} (split={options.split}): {shared} within a row",
    )
    return {"nfe": result.nfe, "direction": options.direction}


def drop_cond_mode(ctx: ModeContext, options: DropCondMode) -> dict[str, Any]:
    """``drop_cond.png``: row pairs from the same noise, the class kept vs dropped after ``after`` K."""
    classes, per, image_shape = ctx.classes, options.per_class, ctx.image_shape
    if classes < 2:
        raise ConfigError("mode=drop_cond needs a class-conditional run")
    labels = class_rows(classes, per)
    kept, dropped = kept_and_dropped(
        ctx.run.model, ctx.run.path, labels, ctx.shape, ctx.sampler, options.after,
        seed=ctx.seed, device=ctx.device, codec=ctx.codec,
    )  # fmt: skip
    grid = torch.stack(
        [kept.images.view(classes, per, *image_shape), dropped.images.view(classes, per, *image_shape)], 1
    )
    save_grid(
        grid.reshape(-1, *image_shape),
        ctx.out_dir / "drop_cond.png",
        nrow=per,
        row_labels=[f"c{c} {kind}" for c in range(classes) for kind in ("kept", "dropped")],
        title=f"class dropped after k = {options.after} K (same noise)",
    )
    return {"nfe": kept.nfe}


def restore_mode(ctx: ModeContext, options: RestoreMode) -> dict[str, Any]:
    """``restore_<kind>.png``: K-Flow restoration (and the FM-projection baseline of ``fm_run_dir``), scored."""
    clean, labels = stack_dataset(ctx.run.splits.reference, options.num_images)
    labels = labels if ctx.classes > 1 else None
    obs = observe(clean, options.kind, options.factor, options.sigma)
    noise = torch.randn(len(clean), *ctx.shape, generator=torch.Generator().manual_seed(ctx.seed))
    sampler, run = ctx.sampler, ctx.run
    restored = kflow_restore(
        run.model, run.path, obs.estimate, options.observed_bands, noise, labels,
        sampler.total_steps, sampler.method, sampler.cfg_scale, codec=ctx.codec, observation=obs,
    ).cpu()  # fmt: skip
    panels, names = [clean, obs.estimate, restored], ["clean", "observed", "K-Flow"]
    info = {"kflow": asdict(score(restored, clean)), "observation": asdict(score(obs.estimate, clean))}
    if options.fm_run_dir:
        fm = load_run(options.fm_run_dir, ctx.device)
        baseline = fm_projection_restore(
            fm.model, run.path.transform, obs.estimate, options.observed_bands, noise, labels,
            sampler.total_steps, sampler.cfg_scale, codec=ctx.codec, observation=obs,
        ).cpu()  # fmt: skip
        panels.append(baseline)
        names.append("FM-proj")
        info["fm_projection"] = asdict(score(baseline, clean))
    save_grid(
        torch.cat(panels).clamp(-1, 1),
        ctx.out_dir / f"restore_{options.kind}.png",
        nrow=len(clean),
        row_labels=names,
        title=f"{options.kind}, observed bands < {options.observed_bands}",
    )
    return info


def edit_mode(ctx: ModeContext, options: EditMode) -> dict[str, Any]:
    """``edit.png``: ``bands`` of generated samples scaled by ``1 + amount`` (or moved towards sample 0)."""
    labels = torch.arange(options.num_samples) % ctx.classes if ctx.classes > 1 else None
    result = ctx.generate(options.num_samples, labels)
    target = result.latents[:1].to(ctx.device) if options.towards_first else None
    with torch.no_grad():
        latents = result.latents.to(ctx.device)
        edited = edit_sweep(latents, ctx.run.path.transform, options.bands, options.amounts, target).cpu()
        images = decode_batches(ctx.codec, edited.reshape(-1, *ctx.shape), device=ctx.device).clamp(-1, 1)
    how = "towards sample 0" if options.towards_first else "scaled by 1 + amount"
    save_grid(
        images,
        ctx.out_dir / "edit.png",
        nrow=len(options.amounts),
        row_labels=[f"sample {i}" for i in range(options.num_samples)],
        col_labels=[f"{a:+.2f}" for a in options.amounts],
        title=f"bands {list(options.bands)} {how}",
    )
    return {"nfe": result.nfe, "bands": list(options.bands), "amounts": list(options.amounts)}


def trajectory_mode(ctx: ModeContext, options: None = None) -> dict[str, Any]:
    """``trajectory.png``: one sample per class (or 10), its decoded state at about 10 values of k."""
    labels = class_rows(ctx.classes, 1)
    n = len(labels) if labels is not None else 10
    result = ctx.generate(n, labels, progress=True, return_trajectory=True)
    stride = max(1, (result.trajectory.shape[1] - 1) // 10)
    frames = result.trajectory[:, ::stride].clamp(-1, 1)
    save_grid(
        frames.reshape(-1, *ctx.image_shape),
        ctx.out_dir / "trajectory.png",
        nrow=frames.shape[1],
        row_labels=[f"class {c}" for c in range(n)] if labels is not None else None,
        col_labels=[f"k={k:.2f}" for k in result.ks[::stride]],
        title="state along k (decoded)",
    )
    return {"nfe": result.nfe}


SAMPLING_MODES: dict[str, Callable[[ModeContext, Any], dict[str, Any]]] = {
    "grid": grid_mode,
    "noise_split": noise_split_mode,
    "drop_cond": drop_cond_mode,
    "restore": restore_mode,
    "trajectory": trajectory_mode,
    "edit": edit_mode,
}
"""Mode name (``SampleRunConfig.mode``, :data:`kflow_image.config.SAMPLE_MODES`) -> its function."""


def run_sampling_mode(cfg: SampleRunConfig) -> dict[str, Any]:
    """Load ``cfg.run_dir`` and draw ``cfg.mode``'s figure; returns what the script prints.

    Raises:
        ConfigError: a mode setting the run cannot take (bands, split, image size), in one line.
    """
    try:
        run = load_run(cfg.run_dir, cfg.device, use_ema=cfg.sample.get("use_ema"))
        sampler = sampler_spec(cfg.sample_config(run.config.sample), run.path, run.data.train)
        ctx = ModeContext(run, sampler, Path(cfg.out_dir or Path(cfg.run_dir) / "samples"), cfg.seed, cfg.device)
        info: dict[str, Any] = {"mode": cfg.mode, "cfg_scale": sampler.cfg_scale, "codec": ctx.codec.name}
        return {**info, **SAMPLING_MODES[cfg.mode](ctx, getattr(cfg, cfg.mode, None))}
    except ValueError as err:
        raise ConfigError(str(err)) from None
