"""Sample labelled PNG grids from a trained image run (pixel or latent), with the paper's steering modes.

    python scripts/sample_image.py run_dir=outputs/image/digits-pixel-fourier mode=grid
    python scripts/sample_image.py run_dir=... mode=noise_split noise_split.direction=share_low
    python scripts/sample_image.py run_dir=... mode=drop_cond
    python scripts/sample_image.py run_dir=... mode=restore restore.kind=deblur restore.fm_run_dir=...
    python scripts/sample_image.py run_dir=... mode=trajectory
    python scripts/sample_image.py run_dir=... mode=edit edit.bands=[0] edit.amounts=[-1,0,1]

Every mode prints its NFE (and PSNR/SSIM for restore) and writes <out_dir>/<mode>.png. Keys and
defaults: kflow_image/config.py (SampleRunConfig); ``sample.*`` left null keep the run's values.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from kflow.training import ConfigError
from kflow_image.cli import main
from kflow_image.codecs import decode_batches
from kflow_image.config import SampleRunConfig
from kflow_image.data import stack_dataset
from kflow_image.editing import edit_sweep
from kflow_image.experiment import load_run, sampler_spec
from kflow_image.plots import save_grid
from kflow_image.restoration import fm_projection_restore, kflow_restore, observe, score
from kflow_image.steering import kept_and_dropped, noise_split
from kflow_image.train import generate


def class_rows(num_classes: int, per_class: int) -> torch.Tensor | None:
    """Labels laid out one class per grid row, or None for unconditional runs."""
    return torch.arange(num_classes).repeat_interleave(per_class) if num_classes > 1 else None


def run_mode(cfg: SampleRunConfig) -> dict:
    run = load_run(cfg.run_dir, cfg.device, use_ema=cfg.sample.get("use_ema"))
    out_dir = Path(cfg.out_dir or Path(cfg.run_dir) / "samples")
    sampler = sampler_spec(cfg.sample_config(run.config.sample), run.path, run.data.train)
    shape, image_shape, device, seed = run.data.data_shape, run.splits.image_shape, cfg.device, cfg.seed
    codec, classes = run.codec, run.splits.num_classes
    info: dict = {"mode": cfg.mode, "cfg_scale": sampler.cfg_scale, "codec": codec.name}
    if cfg.mode == "grid":
        per = cfg.grid.per_class
        labels = class_rows(classes, per)
        n = len(labels) if labels is not None else 100
        result = generate(
            run.model, run.path, n, shape, sampler, labels=labels, seed=seed, device=device, codec=codec, progress=True
        )
        nrow = per if labels is not None else 10
        rows = [f"class {c}" for c in range(classes)] if labels is not None else None
        save_grid(
            result.images, out_dir / "grid.png", nrow=nrow, row_labels=rows, col_labels=[f"#{j}" for j in range(nrow)]
        )
        info["nfe"] = result.nfe
    elif cfg.mode == "noise_split":
        ns = cfg.noise_split
        rows = []
        for r in range(ns.rows):
            labels = torch.full((ns.per_row,), r % classes) if classes > 1 else None
            result = noise_split(
                run.model,
                run.path,
                ns.per_row,
                shape,
                ns.direction,
                ns.split,
                sampler,
                labels=labels,
                seed=seed + r,
                device=device,
                codec=codec,
            )
            rows.append(result.images)
        shared = "bands >= split shared" if ns.direction == "share_high" else "bands < split shared"
        save_grid(
            torch.cat(rows),
            out_dir / f"noise_split_{ns.direction}.png",
            nrow=ns.per_row,
            row_labels=[f"draw {r}" + (f" c{r % classes}" if classes > 1 else "") for r in range(ns.rows)],
            title=f"{ns.direction} (split={ns.split}): {shared} within a row",
        )
        info.update(nfe=result.nfe, direction=ns.direction)
    elif cfg.mode == "drop_cond":
        if classes < 2:
            raise ConfigError("mode=drop_cond needs a class-conditional run")
        per = cfg.drop_cond.per_class
        labels = class_rows(classes, per)
        kept, dropped = kept_and_dropped(
            run.model, run.path, labels, shape, sampler, cfg.drop_cond.after, seed=seed, device=device, codec=codec
        )
        grid = torch.stack(
            [kept.images.view(classes, per, *image_shape), dropped.images.view(classes, per, *image_shape)], 1
        )
        save_grid(
            grid.reshape(-1, *image_shape),
            out_dir / "drop_cond.png",
            nrow=per,
            row_labels=[f"c{c} {kind}" for c in range(classes) for kind in ("kept", "dropped")],
            title=f"class dropped after k = {cfg.drop_cond.after} K (same noise)",
        )
        info["nfe"] = kept.nfe
    elif cfg.mode == "restore":
        rc = cfg.restore
        clean, labels = stack_dataset(run.splits.reference, rc.num_images)
        labels = labels if classes > 1 else None
        obs = observe(clean, rc.kind, rc.factor, rc.sigma)
        noise = torch.randn(len(clean), *shape, generator=torch.Generator().manual_seed(seed))
        restored = kflow_restore(
            run.model,
            run.path,
            obs.estimate,
            rc.observed_bands,
            noise,
            labels,
            sampler.total_steps,
            sampler.method,
            sampler.cfg_scale,
            codec=codec,
        ).cpu()
        panels, names = [clean, obs.estimate, restored], ["clean", "observed", "K-Flow"]
        info.update(kflow=asdict(score(restored, clean)), observation=asdict(score(obs.estimate, clean)))
        if rc.fm_run_dir:
            fm = load_run(rc.fm_run_dir, device)
            baseline = fm_projection_restore(
                fm.model,
                run.path.transform,
                obs.estimate,
                rc.observed_bands,
                noise,
                labels,
                sampler.total_steps,
                sampler.cfg_scale,
                codec=codec,
            ).cpu()
            panels.append(baseline)
            names.append("FM-proj")
            info["fm_projection"] = asdict(score(baseline, clean))
        save_grid(
            torch.cat(panels).clamp(-1, 1),
            out_dir / f"restore_{rc.kind}.png",
            nrow=len(clean),
            row_labels=names,
            title=f"{rc.kind}, observed bands < {rc.observed_bands}",
        )
    elif cfg.mode == "edit":
        ed = cfg.edit
        labels = torch.arange(ed.num_samples) % classes if classes > 1 else None
        result = generate(
            run.model, run.path, ed.num_samples, shape, sampler, labels=labels, seed=seed, device=device, codec=codec
        )
        target = result.latents[:1] if ed.towards_first else None
        with torch.no_grad():
            edited = edit_sweep(
                result.latents.to(device),
                run.path.transform,
                ed.bands,
                ed.amounts,
                None if target is None else target.to(device),
            ).cpu()
            images = decode_batches(codec, edited.reshape(-1, *shape), device=device).clamp(-1, 1)
        how = "towards sample 0" if ed.towards_first else "scaled by 1 + amount"
        save_grid(
            images,
            out_dir / "edit.png",
            nrow=len(ed.amounts),
            row_labels=[f"sample {i}" for i in range(ed.num_samples)],
            col_labels=[f"{a:+.2f}" for a in ed.amounts],
            title=f"bands {list(ed.bands)} {how}",
        )
        info.update(nfe=result.nfe, bands=list(ed.bands), amounts=list(ed.amounts))
    else:
        labels = class_rows(classes, 1)
        n = len(labels) if labels is not None else 10
        result = generate(
            run.model,
            run.path,
            n,
            shape,
            sampler,
            labels=labels,
            seed=seed,
            device=device,
            codec=codec,
            progress=True,
            return_trajectory=True,
        )
        stride = max(1, (result.trajectory.shape[1] - 1) // 10)
        frames = result.trajectory[:, ::stride].clamp(-1, 1)
        ks = result.ks[::stride]
        save_grid(
            frames.reshape(-1, *image_shape),
            out_dir / "trajectory.png",
            nrow=frames.shape[1],
            row_labels=[f"class {c}" for c in range(n)] if labels is not None else None,
            col_labels=[f"k={k:.2f}" for k in ks],
            title="state along k (decoded)",
        )
        info["nfe"] = result.nfe
    return info


def sample(cfg: SampleRunConfig) -> None:
    try:
        info = run_mode(cfg)
    except ValueError as err:  # a mode setting the run cannot take (bands, split, image size): one line
        raise ConfigError(str(err)) from None
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main("sample_image", "sample_image", SampleRunConfig, sample)
