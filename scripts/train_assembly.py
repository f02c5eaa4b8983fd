"""Train the molecular K-Flow assembly model and score it against the identity baseline.

    python scripts/train_assembly.py                       # = make demo (embedded pyxtal crystals)
    python scripts/train_assembly.py K=1 train.steps=100 output_dir=outputs/k1
    python scripts/train_assembly.py data=cod_organic data.input=../shared/data/cod_organic
    torchrun --nproc_per_node=2 scripts/train_assembly.py device=cuda model=M

Writes into ``output_dir``: config.yaml, train_log.csv, loss_curve.png, checkpoints/last.pt,
metrics.json (per method: pm_atom, pm_center, ... means over the test split; the identity
baseline under "identity"), eval_per_cluster.csv, pm_bars.png, and per exported test cluster an XYZ trajectory along k
(``trajectories/<id>.xyz``) and CIFs of the prediction and the crystal (``clusters/``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

import torch
from torch_geometric.data import Batch

from kflow.path import BUMPS
from kflow.training import ConfigError, TrainConfig, Trainer, exit_on_training_error
from kflow_mol.evaluate import (MethodScores, Prediction, evaluate_method, identity_method, load_clusters,
                               write_per_cluster_csv)
from kflow_mol.export import write_cluster_cif, write_xyz_trajectory
from kflow_mol.flow import MODES, AssemblyFlow, translation_scale_of
from kflow_mol.models import PRESETS, build_model
from kflow_mol.plots import pm_bar_chart

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs" / "assembly")
DATA_SOURCES = ("pyxtal", "cif", "prepared", "pyxtal_random", "cod_cluster17", "pyxtal_mech")
SAMPLE_METHODS = ("euler", "heun", "rk4", "dopri5")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for a config that cannot work, before any work."""
    if not isinstance(cfg.K, int) or cfg.K < 1:
        raise ConfigError(f"K must be an integer >= 1, got {cfg.K}")
    if cfg.bump not in BUMPS:
        raise ConfigError(f"bump must be one of {sorted(BUMPS)}, got {cfg.bump!r}")
    if cfg.flow.mode not in MODES:
        raise ConfigError(f"flow.mode must be one of {MODES}, got {cfg.flow.mode!r}")
    if cfg.flow.mode == "cartesian" and (cfg.K != 1 or cfg.model.head != "atom"):
        raise ConfigError("flow.mode=cartesian (all-atom baseline) needs K=1 and model.head=atom")
    if cfg.flow.mode == "rigid" and cfg.model.head != "rigid":
        raise ConfigError("flow.mode=rigid needs model.head=rigid")
    if cfg.model.preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {sorted(PRESETS)}, got {cfg.model.preset!r}")
    if cfg.model.edge_mode not in ("knn", "radius"):
        raise ConfigError(f"model.edge_mode must be knn or radius, got {cfg.model.edge_mode!r}")
    if cfg.sample.method not in SAMPLE_METHODS:
        raise ConfigError(f"sample.method must be one of {SAMPLE_METHODS}, got {cfg.sample.method!r}")
    if cfg.sample.steps < 1 or cfg.sample.batch_size < 1:
        raise ConfigError("sample.steps and sample.batch_size must be >= 1")
    data = cfg.data
    if data.source not in DATA_SOURCES:
        raise ConfigError(f"data.source must be one of {DATA_SOURCES}, got {data.source!r}")
    if data.source == "prepared":
        if not data.folder or not (Path(data.folder) / "manifest.json").is_file():
            raise ConfigError(f"data=prepared needs data.folder=<a folder from scripts/prepare_assembly_data.py>; "
                              f"{data.folder!r} has no manifest.json")
    elif data.source in ("cif", "cod_cluster17") and (not data.input or not Path(data.input).is_dir()):
        raise ConfigError(f"data.source={data.source} needs data.input=<existing folder>, got {data.input!r}")
    if cfg.get("cpu_threads") is not None and (not isinstance(cfg.cpu_threads, int) or cfg.cpu_threads < 1):
        raise ConfigError(f"cpu_threads must be a positive integer or null, got {cfg.cpu_threads}")
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but CUDA is not available on this machine")
    TrainConfig.from_dict(train_config_dict(cfg))  # validates the train group


def set_cpu_threads(cfg: DictConfig) -> None:
    """Small molecule-level ops gain little from intra-op threads and lose a lot when cores are shared."""
    threads = cfg.get("cpu_threads")
    if str(cfg.device) == "cpu" and threads:
        torch.set_num_threads(int(threads))


def train_config_dict(cfg: DictConfig) -> dict:
    values = OmegaConf.to_container(cfg.train, resolve=True)
    return {**values, "out_dir": str(cfg.output_dir), "resume": bool(cfg.resume), "device": str(cfg.device)}


def model_kwargs(model_cfg) -> dict:
    """Keyword arguments of build_model from the model group (null entries keep the preset)."""
    values = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    return {key: value for key, value in values.items() if value is not None}


def steps_per_band(cfg) -> int:
    return max(1, math.ceil(cfg.sample.steps / cfg.K))


def make_flow(cfg, translation_scale: float) -> AssemblyFlow:
    return AssemblyFlow(num_bands=cfg.K, mode=cfg.flow.mode, bump=cfg.bump, translation_scale=translation_scale,
                        kernel_width=cfg.flow.kernel_width, grouping=cfg.flow.grouping, reverse=cfg.flow.reverse)


def flow_method(flow: AssemblyFlow, model: torch.nn.Module, cfg, trajectory: bool = False):
    """The ``predict(batch)`` of a trained flow."""
    model.eval()

    def predict(batch: Batch) -> Prediction:
        out = flow.sample(model, batch, method=cfg.sample.method, steps_per_band=steps_per_band(cfg),
                          return_trajectory=trajectory)
        return Prediction(pos=out.pos, nfe=out.nfe, trajectory=out.trajectory, ks=out.ks)

    return predict


def export_clusters(out_dir: Path, clusters: list, scores: MethodScores, count: int) -> None:
    """XYZ trajectories along k and CIFs (prediction, crystal, start) of the first test clusters."""
    count = len(clusters) if count < 0 else min(count, len(clusters))
    for cluster, prediction in zip(clusters[:count], scores.predictions[:count]):
        name = cluster.cluster_id
        mol = cluster.mol_index - cluster.mol_index.min()
        frames = list(prediction.trajectory or [prediction.pos]) + [cluster.pos_target]
        ks = list(prediction.ks or [float("nan")]) + [float("inf")]  # last frame: the crystal
        write_xyz_trajectory(out_dir / "trajectories" / f"{name}.xyz", cluster.z, frames, ks, mol,
                             title=f"{name} {scores.name}; last frame = crystal")
        for tag, pos in (("pred", prediction.pos), ("crystal", cluster.pos_target), ("start", cluster.pos_start)):
            write_cluster_cif(out_dir / "clusters" / f"{name}_{tag}.cif", cluster.z, pos, f"{name}_{tag}", mol)


def run(cfg: DictConfig) -> dict:
    """Train, sample the test split, write outputs; returns metrics (rank 0) or {}."""
    validate(cfg)
    set_cpu_threads(cfg)
    out_dir = Path(cfg.output_dir)
    data = cfg.data
    load = dict(input=data.input, folder=data.folder, start=data.start, repeats=data.repeats)
    train_set = load_clusters(data.source, "train", limit=data.max_train, progress=True, **load)
    test_set = load_clusters(data.source, "test", limit=data.max_test, **load)
    if not train_set or not test_set:
        raise ConfigError(f"data {data.source}: {len(train_set)} train / {len(test_set)} test clusters; need both")
    sigma = translation_scale_of(train_set)
    flow = make_flow(cfg, sigma)
    torch.manual_seed(cfg.train.seed)
    model = build_model(**model_kwargs(cfg.model))
    run_config = {**OmegaConf.to_container(cfg, resolve=True), "translation_scale": sigma}
    signature = {"preset": cfg.model.preset, "head": cfg.model.head, "num_bands": cfg.K, "mode": cfg.flow.mode}
    trainer = Trainer(model, flow.loss, train_set, TrainConfig.from_dict(train_config_dict(cfg)),
                      collate_fn=Batch.from_data_list, run_config=run_config, signature=signature)
    is_main = trainer.dist.is_main
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_config))
        print(f"data: {len(train_set)} train / {len(test_set)} test clusters ({data.source}, start={data.start}); "
              f"translation scale {sigma:.2f} Å; model {cfg.model.preset} "
              f"({sum(p.numel() for p in model.parameters()):,} parameters); K={cfg.K}", file=sys.stderr)
    result = trainer.fit()
    if not is_main:
        return {}
    model = result.ema_model or result.model
    device = next(model.parameters()).device
    name = f"kflow_K{cfg.K}" if cfg.flow.mode == "rigid" else "allatom_lerp"
    tic = time.perf_counter()
    scores = {"identity": evaluate_method("identity", identity_method, test_set, batch_size=cfg.sample.batch_size,
                                          device=device, with_rmsd=cfg.eval.rmsd),
              name: evaluate_method(name, flow_method(flow, model, cfg, trajectory=True), test_set,
                                    batch_size=cfg.sample.batch_size, device=device, with_rmsd=cfg.eval.rmsd,
                                    keep_predictions=True, progress=True)}
    summary = {key: value.summary() for key, value in scores.items()}
    metrics = {**summary, "run": {"train_steps": result.step, "train_wall_s": result.wall_time_s,
                                  "final_loss": result.final_loss, "eval_wall_s": time.perf_counter() - tic,
                                  "n_train": len(train_set), "n_test": len(test_set), "K": cfg.K,
                                  "translation_scale": sigma, "test_ids": scores[name].cluster_ids},
               "per_cluster": {key: value.per_cluster for key, value in scores.items()}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_per_cluster_csv(out_dir / "eval_per_cluster.csv", scores)
    export_clusters(out_dir, test_set, scores[name], cfg.sample.export)
    pm_bar_chart(summary, out_dir / "pm_bars.png", title=f"{data.source} test split ({len(test_set)} clusters)")
    print_table(summary)
    print(f"outputs in {out_dir}/", file=sys.stderr)
    return metrics


def print_table(summary: dict) -> None:
    print(f"{'method':<14}{'PM-atom':>10}{'PM-center':>11}{'RMSD_17':>9}{'collision%':>11}{'separation%':>12}{'NFE':>5}")
    for method, s in summary.items():
        print(f"{method:<14}{s['pm_atom']:>10.3f}{s['pm_center']:>11.3f}{s['rmsd_17']:>9.3f}"
              f"{s['collision']:>11.2f}{s['separation']:>12.1f}{int(s['nfe']):>5}")


@hydra.main(config_path=CONFIG_DIR, config_name="train_assembly", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_training_error("train_assembly"):
        try:
            run(cfg)
        except FileNotFoundError as error:
            raise ConfigError(str(error)) from None


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
