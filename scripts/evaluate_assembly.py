"""Score a saved assembly model on the test split of any dataset.

    python scripts/evaluate_assembly.py checkpoint=outputs/assembly_demo/checkpoints/last.pt
    python scripts/evaluate_assembly.py checkpoint=... use_run_data=false data=prepared data.folder=PATH
    python scripts/evaluate_assembly.py checkpoint=... use_run_data=false data=pyxtal data.start=scrambled

Prints PM-atom / PM-center / RMSD_17 / collision / separation for the model and the identity
baseline and writes them as JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from kflow.training import CheckpointError, ConfigError, load_checkpoint
from kflow_mol.evaluate import evaluate_method, identity_method, load_clusters, write_per_cluster_csv
from kflow_mol.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_assembly import flow_method, make_flow, model_kwargs, print_table  # noqa: E402

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs" / "assembly")


def run(cfg: DictConfig) -> dict:
    path = Path(cfg.checkpoint)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    state = load_checkpoint(path, map_location=cfg.device)
    run_cfg = OmegaConf.create(state["run_config"])
    if cfg.sample.method is not None:
        run_cfg.sample.method = cfg.sample.method
    if cfg.sample.steps is not None:
        run_cfg.sample.steps = cfg.sample.steps
    data = run_cfg.data if cfg.use_run_data else cfg.data
    if data.source == "prepared" and not (data.folder and (Path(data.folder) / "manifest.json").is_file()):
        raise ConfigError(f"data=prepared needs data.folder=<prepared folder>, got {data.folder!r}")
    clusters = load_clusters(data.source, cfg.split, input=data.input, folder=data.folder, start=data.start,
                             repeats=data.repeats, limit=data.max_test)
    if not clusters:
        raise ConfigError(f"no {cfg.split} clusters in data {data.source}")
    model = build_model(**model_kwargs(run_cfg.model))
    model.load_state_dict(state["model"])
    model.to(cfg.device)
    flow = make_flow(run_cfg, float(run_cfg.translation_scale))
    name = f"kflow_K{run_cfg.K}" if run_cfg.flow.mode == "rigid" else "allatom_lerp"
    common = dict(batch_size=cfg.sample.batch_size, device=cfg.device, with_rmsd=cfg.eval.rmsd)
    scores = {"identity": evaluate_method("identity", identity_method, clusters, **common),
              name: evaluate_method(name, flow_method(flow, model, run_cfg), clusters, progress=True, **common)}
    summary = {key: value.summary() for key, value in scores.items()}
    output = Path(cfg.output) if cfg.output else path.parent.parent / f"eval_{cfg.split}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    metrics = {**summary, "checkpoint": str(path), "data": OmegaConf.to_container(data, resolve=True),
               "per_cluster": {key: value.per_cluster for key, value in scores.items()},
               "cluster_ids": scores[name].cluster_ids}
    output.write_text(json.dumps(metrics, indent=2))
    write_per_cluster_csv(output.with_suffix(".csv"), scores)
    print_table(summary)
    print(f"metrics written to {output}", file=sys.stderr)
    return metrics


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate_assembly", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except (ConfigError, CheckpointError, FileNotFoundError) as error:
        print(f"evaluate_assembly: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
