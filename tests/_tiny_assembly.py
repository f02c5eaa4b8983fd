"""A tiny random-weight assembly checkpoint in the training script's format, for fast tests of
:mod:`kflow_mol.assemble` (importable from every test folder: ``tests/`` is on ``sys.path``)."""

from dataclasses import asdict
from pathlib import Path

import torch

from kflow.training.checkpoint import FORMAT_VERSION, save_checkpoint

TINY = {"irreps_hidden": "8x0e+2x1o+2x1e", "mol_layers": 1}


def tiny_checkpoint(path: Path, start: str = "local", **changes) -> Path:
    """A random-weight K = 2 rigid K-Flow checkpoint as scripts/train_assembly.py writes it."""
    from kflow_mol.config import AssemblyConfig, DataConfig, ModelConfig
    from kflow_mol.models import build_model

    cfg = AssemblyConfig(K=2, data=DataConfig(source="real", start=start), model=ModelConfig(**TINY))
    torch.manual_seed(0)
    model = build_model(**cfg.model.build_kwargs())
    run_config = {**asdict(cfg), "translation_scale": 3.5}
    run_config.update(changes)
    state = {
        "format_version": FORMAT_VERSION,
        "signature": {"preset": "S", "head": "rigid", "num_bands": 2, "mode": "rigid"},
        "step": 7,
        "model": model.state_dict(),
        "ema": None,
        "run_config": run_config,
    }
    return save_checkpoint(path, state)
