"""Prepare a molecular-assembly dataset: crystals -> 17-molecule clusters with start states.

    python scripts/prepare_assembly_data.py                                  # pyxtal test.db
    python scripts/prepare_assembly_data.py source=cif input=../shared/data/cod_organic output=data/cod
    python scripts/prepare_assembly_data.py source=pyxtal start=scrambled repeats=4
    python scripts/prepare_assembly_data.py source=pyxtal_random synthetic_per_molecule=4
    python scripts/prepare_assembly_data.py source=cod_cluster17 input=<folder with raw/> output=data/c17

Writes into the output folder: clusters.pt (the processed clusters), splits.json, manifest.json,
rejections.csv, rejection_summary.txt, identity_pm.json (PM of the start state taken as the
prediction) and, with write_csv=true, the COD-Cluster17 CSV layout under raw/.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from kflow_mol.data.clusters import CRITERIA
from kflow_mol.data.sources import EVALUATION_ONLY, SOURCE_TAGS
from kflow_mol.data.splits import SPLIT_MODES
from kflow_mol.data.start_states import START_PRESETS

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs" / "prepare")


def validate(cfg: DictConfig) -> None:
    """Raise ValueError (one line) for settings that cannot work, before any work."""
    if cfg.source not in SOURCE_TAGS:
        raise ValueError(f"source must be one of {sorted(SOURCE_TAGS)}, got {cfg.source!r}")
    if cfg.source in ("cif", "cod_cluster17") and (not cfg.input or not Path(cfg.input).is_dir()):
        raise ValueError(f"source={cfg.source} needs input=<existing folder>, got {cfg.input!r}")
    if cfg.start not in START_PRESETS:
        raise ValueError(f"start must be one of {sorted(START_PRESETS)}, got {cfg.start!r}")
    if cfg.criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {cfg.criterion!r}")
    if cfg.split_mode not in SPLIT_MODES:
        raise ValueError(f"split_mode must be one of {SPLIT_MODES}, got {cfg.split_mode!r}")
    if len(cfg.fractions) != 3 or min(cfg.fractions) < 0:
        raise ValueError(f"fractions must be three shares >= 0, got {list(cfg.fractions)}")


def pair_mismatch(p, q) -> float:
    """sqrt(mean over the full N x N matrix of (|p_i - p_j| - |q_i - q_j|)^2); p, q: (N, 3) tensors."""
    import torch

    return ((torch.cdist(p, p) - torch.cdist(q, q)) ** 2).mean().sqrt().item()


def identity_pm(clusters) -> dict:
    """Mean PM-atom / PM-center when the start state is taken as the prediction."""
    atom, center = [], []
    for c in clusters:
        start, target = c.pos_start.double(), c.pos_target.double()
        atom.append(pair_mismatch(start, target))
        center.append(pair_mismatch(c.trans_start.double(), c.trans_target.double()))
    count = max(len(atom), 1)
    return {"clusters": len(atom), "pm_atom": sum(atom) / count, "pm_center": sum(center) / count}


@hydra.main(config_path=CONFIG_DIR, config_name="prepare_assembly_data", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        validate(cfg)
    except ValueError as error:
        sys.exit(f"prepare_assembly_data: {error}")
    from kflow_mol.data import build_assembly_dataset, load_assembly_dataset

    report = build_assembly_dataset(
        cfg.source, input=cfg.input, output=cfg.output, start=cfg.start, repeats=cfg.repeats, seed=cfg.seed,
        num_mols=cfg.num_mols, criterion=cfg.criterion, max_atoms=cfg.max_atoms, min_distance=cfg.min_distance,
        rdkit_check=cfg.rdkit_check, split_mode=cfg.split_mode, split_seed=cfg.split_seed,
        fractions=tuple(cfg.fractions), ids=list(cfg.ids) if cfg.ids else None,
        synthetic_per_molecule=cfg.synthetic_per_molecule, write_csv=cfg.write_csv, progress=cfg.progress,
        force=cfg.force,
    )
    (report.output / "prepare_config.yaml").write_text(OmegaConf.to_yaml(cfg))
    split = "test" if cfg.source in EVALUATION_ONLY else None
    pm = identity_pm(load_assembly_dataset(report.output, split))
    (report.output / "identity_pm.json").write_text(json.dumps(pm, indent=1) + "\n")
    print(report.summary_table())
    print(f"{'reused cached build' if report.cached else 'built'} in {report.seconds:.1f} s -> {report.output}")
    print(f"identity PM-atom {pm['pm_atom']:.2f} A, PM-center {pm['pm_center']:.2f} A over {pm['clusters']} clusters")
    if report.unsplit:
        print(f"warning: {len(report.unsplit)} kept crystals are in no split (splits.json predates them)")


if __name__ == "__main__":
    main()
