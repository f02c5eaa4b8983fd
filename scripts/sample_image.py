"""Sample PNG grids from a trained image run, with the paper's steering modes.

    python scripts/sample_image.py run_dir=outputs/image/digits-fourier mode=grid
    python scripts/sample_image.py run_dir=... mode=noise_split noise_split.direction=share_low
    python scripts/sample_image.py run_dir=... mode=drop_cond
    python scripts/sample_image.py run_dir=... mode=restore restore.kind=deblur restore.fm_run_dir=...
    python scripts/sample_image.py run_dir=... mode=trajectory

Every mode prints its NFE (and PSNR/SSIM for restore) and writes <out_dir>/<mode>.png.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from kflow_image.data import stack_dataset
from kflow_image.experiment import load_run, sampler_spec
from kflow_image.plots import save_grid
from kflow_image.restoration import fm_projection_restore, kflow_restore, observe, score
from kflow_image.steering import kept_and_dropped, noise_split
from kflow_image.train import generate

MODES = ("grid", "noise_split", "drop_cond", "restore", "trajectory")


def class_rows(num_classes: int, per_class: int) -> torch.Tensor | None:
    """Labels laid out one class per grid row, or None for unconditional runs."""
    return torch.arange(num_classes).repeat_interleave(per_class) if num_classes > 1 else None


def run_mode(cfg: dict) -> dict:
    if cfg["mode"] not in MODES:
        raise ValueError(f"mode={cfg['mode']!r}: choose one of {MODES}")
    run = load_run(cfg["run_dir"], cfg["device"])
    out_dir = Path(cfg["out_dir"] or Path(cfg["run_dir"]) / "samples")
    sampler = sampler_spec(cfg["sample"], run.path, run.splits)
    shape, device, seed = run.splits.image_shape, cfg["device"], cfg["seed"]
    classes = run.splits.num_classes
    info: dict = {"mode": cfg["mode"], "cfg_scale": sampler.cfg_scale}
    if cfg["mode"] == "grid":
        per = cfg["grid"]["per_class"]
        labels = class_rows(classes, per)
        n = len(labels) if labels is not None else 100
        result = generate(run.model, run.path, n, shape, sampler, labels=labels, seed=seed, device=device, progress=True)
        save_grid(result.images, out_dir / "grid.png", nrow=per if labels is not None else 10)
        info["nfe"] = result.nfe
    elif cfg["mode"] == "noise_split":
        ns = cfg["noise_split"]
        rows = []
        for r in range(ns["rows"]):
            labels = torch.full((ns["per_row"],), r % classes) if classes > 1 else None
            result = noise_split(run.model, run.path, ns["per_row"], shape, ns["direction"], ns["split"], sampler,
                                 labels=labels, seed=seed + r, device=device)
            rows.append(result.images)
        save_grid(torch.cat(rows), out_dir / f"noise_split_{ns['direction']}.png", nrow=ns["per_row"])
        info.update(nfe=result.nfe, direction=ns["direction"])
    elif cfg["mode"] == "drop_cond":
        if classes < 2:
            raise ValueError("mode=drop_cond needs a class-conditional run")
        per = cfg["drop_cond"]["per_class"]
        labels = class_rows(classes, per)
        kept, dropped = kept_and_dropped(run.model, run.path, labels, shape, sampler, cfg["drop_cond"]["after"],
                                         seed=seed, device=device)
        grid = torch.stack([kept.images.view(classes, per, *shape), dropped.images.view(classes, per, *shape)], 1)
        save_grid(grid.reshape(-1, *shape), out_dir / "drop_cond.png", nrow=per)  # row pairs: kept, dropped
        info["nfe"] = kept.nfe
    elif cfg["mode"] == "restore":
        rc = cfg["restore"]
        clean, labels = stack_dataset(run.splits.reference, rc["num_images"])
        labels = labels if classes > 1 else None
        obs = observe(clean, rc["kind"], rc["factor"], rc["sigma"])
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
        restored = kflow_restore(run.model, run.path, obs.estimate, rc["observed_bands"], noise, labels,
                                 sampler.total_steps, sampler.method, sampler.cfg_scale).cpu()
        panels = [clean, obs.estimate, restored]
        info.update(kflow=asdict(score(restored, clean)), observation=asdict(score(obs.estimate, clean)))
        if rc["fm_run_dir"]:
            fm = load_run(rc["fm_run_dir"], device)
            baseline = fm_projection_restore(fm.model, run.path.transform, obs.estimate, rc["observed_bands"],
                                             noise, labels, sampler.total_steps, sampler.cfg_scale).cpu()
            panels.append(baseline)
            info["fm_projection"] = asdict(score(baseline, clean))
        save_grid(torch.cat(panels), out_dir / f"restore_{rc['kind']}.png", nrow=len(clean))
    else:
        labels = class_rows(classes, 1)
        n = len(labels) if labels is not None else 10
        result = generate(run.model, run.path, n, shape, sampler, labels=labels, seed=seed, device=device, progress=True,
                          return_trajectory=True)
        stride = max(1, (result.trajectory.shape[1] - 1) // 10)
        frames = result.trajectory[:, ::stride].clamp(-1, 1)
        save_grid(frames.reshape(-1, *shape), out_dir / "trajectory.png", nrow=frames.shape[1])
        info["nfe"] = result.nfe
    return info


@hydra.main(config_path="../configs/image", config_name="sample_image", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        info = run_mode(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
