"""Prepare a molecular-assembly dataset: crystals -> 17-molecule clusters with start states.

    python scripts/prepare_assembly_data.py                                  # pyxtal test.db
    python scripts/prepare_assembly_data.py source=cif input=../shared/data/cod_organic output=data/cod
    python scripts/prepare_assembly_data.py source=cif input=<folder> split_mode=all   # one evaluation set
    python scripts/prepare_assembly_data.py source=pyxtal_random synthetic_per_molecule=4

Exits 0 with every input file accounted for (kept + rejected + skipped = N), or 2 with one
line and nothing written (a bad key or value too; ``--help`` lists every key). Settings:
configs/prepare/prepare_assembly_data.yaml; run logic: kflow_mol.data.prepare; outputs and
rejection reasons: data/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kflow_edge import cli

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "prepare"


def prepare(cfg) -> None:
    from omegaconf import OmegaConf

    from kflow_mol.data.prepare import run_prepare

    sys.exit(run_prepare(cli.to_plain(cfg), OmegaConf.to_yaml(cfg)))


if __name__ == "__main__":
    cli.main("prepare_assembly_data", CONFIG_DIR, "prepare_assembly_data", lambda cfg: cfg, prepare)
