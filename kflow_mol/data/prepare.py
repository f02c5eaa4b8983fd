"""Run logic of ``scripts/prepare_assembly_data.py``: check the settings, build, report.

The script hands its (Hydra) config over as a plain mapping whose keys are the keyword
arguments of :func:`~kflow_mol.data.build.build_assembly_dataset`. :func:`run_prepare`
returns the exit status: 0 with a complete account of every input file, or 2 with one line
on stderr and nothing written (bad setting, missing input, no candidate file).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from kflow_mol.data.build import BuildReport, build_assembly_dataset
from kflow_mol.data.clusters import CRITERIA
from kflow_mol.data.dataset import AssemblyData, load_assembly_dataset
from kflow_mol.data.sources import EVALUATION_ONLY, SOURCE_TAGS
from kflow_mol.data.splits import BUILD_SPLIT_MODES
from kflow_mol.data.start_states import START_PRESETS
from kflow_mol.metrics import pm_atom, pm_center

SETTING_KEYS = frozenset(inspect.signature(build_assembly_dataset).parameters)
PROGRAM = "prepare_assembly_data"


def validate_prepare_config(cfg: Mapping) -> None:
    """Raise ValueError (one line) for settings that cannot work, before any work.

    Args:
        cfg: the settings; keys are :func:`build_assembly_dataset` keyword arguments.
    """
    unknown = sorted(set(cfg) - SETTING_KEYS)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(SETTING_KEYS)}")
    if cfg["source"] not in SOURCE_TAGS:
        raise ValueError(f"source must be one of {sorted(SOURCE_TAGS)}, got {cfg['source']!r}")
    if cfg["source"] in ("cif", "cod_cluster17") and (not cfg.get("input") or not Path(cfg["input"]).is_dir()):
        raise ValueError(f"source={cfg['source']} needs input=<existing folder>, got {cfg.get('input')!r}")
    if cfg["source"] == "ase" and (not cfg.get("input") or not Path(cfg["input"]).exists()):
        raise ValueError(f"source=ase needs input=<existing structure file or folder>, got {cfg.get('input')!r}")
    if cfg["start"] not in START_PRESETS:
        raise ValueError(f"start must be one of {sorted(START_PRESETS)}, got {cfg['start']!r}")
    if cfg["criterion"] not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {cfg['criterion']!r}")
    if cfg["split_mode"] not in BUILD_SPLIT_MODES:
        raise ValueError(f"split_mode must be one of {BUILD_SPLIT_MODES}, got {cfg['split_mode']!r}")
    if len(cfg["fractions"]) != 3 or min(cfg["fractions"]) < 0:
        raise ValueError(f"fractions must be three shares >= 0, got {list(cfg['fractions'])}")
    for key in ("time_limit", "max_file_mb"):
        if cfg.get(key) is not None and cfg[key] < 0:
            raise ValueError(f"{key} must be >= 0 (0 or null: no limit), got {cfg[key]}")
    if cfg.get("workers", 1) < 1:
        raise ValueError(f"workers must be >= 1, got {cfg['workers']}")


IDENTITY_PM_CLUSTERS = 2000  # larger sets are scored on this many clusters, evenly spread


def identity_pm(clusters: Sequence[AssemblyData], max_clusters: int | None = IDENTITY_PM_CLUSTERS) -> dict:
    """Mean PM-atom / PM-center (Å, float64) when the start state is taken as the prediction.

    PM is quadratic in the atoms of a cluster, so above ``max_clusters`` clusters (None: no cap)
    it is taken on ``max_clusters`` of them, evenly spread over the set (``scored`` says how many).
    """
    total = len(clusters)
    rows = range(total) if max_clusters is None or total <= max_clusters else np.linspace(0, total - 1, max_clusters)
    atom, center = [], []
    for row in rows:
        c = clusters[int(row)]
        atom.append(float(pm_atom(c.pos_target.double(), c.pos_start.double())))
        center.append(float(pm_center(c.pos_target.double(), c.pos_start.double(), c.mol_index)))
    count = max(len(atom), 1)
    return {"clusters": total, "scored": len(atom), "pm_atom": sum(atom) / count, "pm_center": sum(center) / count}


def _build_arguments(cfg: Mapping) -> dict:
    arguments = dict(cfg)
    arguments["fractions"] = tuple(cfg["fractions"])
    arguments["ids"] = [str(i) for i in cfg["ids"]] if cfg.get("ids") else None
    return arguments


def report_lines(report: BuildReport, pm: dict) -> list[str]:
    """What the script prints after a build."""
    lines = [
        report.summary_table(),
        f"{'reused cached build' if report.cached else 'built'} in {report.seconds:.1f} s -> {report.output}",
    ]
    if pm["clusters"]:
        lines.append(
            f"identity PM-atom {pm['pm_atom']:.2f} A, PM-center {pm['pm_center']:.2f} A over {pm['clusters']} clusters"
            + (f" ({pm['scored']} scored, evenly spread)" if pm.get("scored", pm["clusters"]) < pm["clusters"] else "")
        )
    else:
        lines.append("no cluster was kept: nothing to evaluate (see rejections.csv)")
    problems = {k: report.reason_counts.get(k, 0) for k in ("error", "timeout")}
    if any(problems.values()):
        lines.append(
            f"warning: {problems['error']} errors and {problems['timeout']} timeouts; "
            f"details in {report.output / 'errors.log'}"
        )
    if report.unsplit:
        lines.append(f"warning: {len(report.unsplit)} kept crystals are in no split (splits.json predates them)")
    return lines


def run_prepare(
    cfg: Mapping, config_yaml: str | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Validate, build, write ``prepare_config.yaml`` and ``identity_pm.json``, print the account.

    Args:
        cfg: the settings (keys of :func:`build_assembly_dataset`).
        config_yaml: the config as text, saved next to the dataset.
        out: where the account goes (stdout).
        err: where a refusal goes (stderr).

    Returns:
        0 after a build, 2 when the settings or the input are refused (nothing written),
        130 when interrupted (the outputs hold what was done, marked incomplete).
    """
    out, err = out or sys.stdout, err or sys.stderr
    try:
        validate_prepare_config(cfg)
        report = build_assembly_dataset(**_build_arguments(cfg))
    except (ValueError, FileNotFoundError) as error:
        print(f"{PROGRAM}: {error}", file=err)
        return 2
    except KeyboardInterrupt:
        print(
            f"{PROGRAM}: interrupted; the output folder holds the entries done so far (manifest complete=false)",
            file=err,
        )
        return 130
    if config_yaml is not None:
        (report.output / "prepare_config.yaml").write_text(config_yaml)
    split = "test" if report.source in EVALUATION_ONLY else None
    pm = identity_pm(load_assembly_dataset(report.output, split))
    (report.output / "identity_pm.json").write_text(json.dumps(pm, indent=1) + "\n")
    print("\n".join(report_lines(report, pm)), file=out)
    return 0
