"""``scripts/assemble.py``'s job: its config, one input or a folder in batch mode, the summary line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kflow.training import ConfigError
from kflow.training.config import check_range
from kflow_mol.assemble.common import AssembleError
from kflow_mol.assemble.inputs import input_kind
from kflow_mol.assemble.model import LoadedModel, load_model
from kflow_mol.assemble.outputs import _safe, check_output_folder, check_writable, write_result
from kflow_mol.assemble.predict import AssemblyResult, assemble, check_options


@dataclass
class AssembleConfig:
    """``scripts/assemble.py``: pack one molecule, re-pack a crystal, or every file of a folder.

    Attributes:
        input: a SMILES string, a molecule or crystal file, or a folder of such files (batch).
        output: the output folder (batch: one sub-folder per input file, plus ``batch_report.json``);
            ``null``: ``outputs/assemble/<input name>``.
        num_mols: copies of the molecule (crystals: the cluster size cut).
        start: ``scrambled`` or ``local``.
        model: ``default`` (the shipped model) or a checkpoint path (any train_assembly.py checkpoint).
        samples: start states drawn per input; the physically best prediction is kept.
        seed: seed of the conformer and of the start states.
        steps: sampler steps in total (``null``: the model's own).
        method: sampler method (``null``: the model's own).
        device: ``cpu`` or ``cuda``.
        relax: remove clashes between molecules after the prediction by rigid translations
            (the raw prediction is scored in the report under ``raw``).
        png: write the PNG.
        progress: the batch progress bar.
        cpu_threads: torch threads (``null``: torch's default).
    """

    input: str | None = None
    output: str | None = None
    num_mols: int = 17
    start: str = "scrambled"
    model: str = "default"
    samples: int = 1
    seed: int = 0
    steps: int | None = None
    method: str | None = None
    device: str = "cpu"
    relax: bool = True
    png: bool = True
    progress: bool = True
    cpu_threads: int | None = 1

    def __post_init__(self):
        check_options(self.start, self.num_mols, self.samples, self.steps)
        if self.cpu_threads is not None:
            check_range("cpu_threads", self.cpu_threads, minimum=1)


def batch_files(folder: Path) -> list[Path]:
    """The structure files of a folder (sorted; sub-folders and other files are not inputs)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and input_kind(p) is not None)


def run_assemble(cfg: AssembleConfig, echo: Callable[[str], None] | None = None) -> dict:
    """The script's job: one input, or a folder in batch mode.

    Returns:
        The report (single input) or the batch summary.

    Raises:
        AssembleError: a bad input (single mode), model, option or output folder (one line).
    """
    echo = echo or (lambda text: print(text, file=sys.stderr))
    if not cfg.input:
        raise AssembleError("input=<SMILES, molecule or crystal file, or folder> is required")
    if cfg.cpu_threads and str(cfg.device) == "cpu":
        torch.set_num_threads(int(cfg.cpu_threads))
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise AssembleError(f"device={cfg.device} but CUDA is not available on this machine")
    source = Path(str(cfg.input)).expanduser()
    name = _safe(source.name if source.exists() else "smiles")
    output = Path(cfg.output) if cfg.output else Path("outputs") / "assemble" / name
    check_writable(output)
    loaded = load_model(cfg.model, cfg.device, cfg.start)
    options = dict(
        num_mols=cfg.num_mols,
        start=cfg.start,
        model=loaded,
        samples=cfg.samples,
        seed=cfg.seed,
        steps=cfg.steps,
        relax=cfg.relax,
    )
    if source.is_dir():
        return run_batch(source, output, cfg, loaded, echo, options)
    result = assemble(str(cfg.input), method=cfg.method, device=cfg.device, **options)
    paths = write_result(result, output, png=cfg.png)
    echo(summary_line(result))
    echo(f"wrote {len(paths)} files to {output}/")
    return result.report


def summary_line(result: AssemblyResult) -> str:
    """One line: formula, PM (crystal input), collisions, closest contact, density, time."""
    pred = result.report["prediction"]
    parts = [f"{result.name} ({result.report['formula']}, {result.report['num_mols']} molecules)"]
    if "pm_atom" in pred:
        parts.append(
            f"PM-atom {pred['pm_atom']:.2f} Å / PM-center {pred['pm_center']:.2f} Å "
            f"(start {pred['identity_pm_atom']:.2f} / {pred['identity_pm_center']:.2f})"
        )
    parts.append(f"collisions {pred['collision_pct']:.2f}%")
    parts.append(f"separation {pred['separation_pct']:.1f}%")
    parts.append(f"closest contact {pred['closest_contact_A']:.2f} Å")
    parts.append(f"density ≈ {pred['packing']['density_g_cm3']:.2f} g/cm³")
    parts.append(f"{result.report['wall_s']:.1f} s")
    return ": ".join(parts[:2]) + ", " + ", ".join(parts[2:])


def run_batch(folder: Path, output: Path, cfg: AssembleConfig, loaded: LoadedModel, echo, options: dict) -> dict:
    """Every structure file of ``folder``: one sub-folder each; a failure is reported and counted,
    the other files are still done. Writes ``batch_report.json``."""
    from tqdm import tqdm

    files = batch_files(folder)
    if not files:
        raise AssembleError(f"input folder {folder} holds no molecule or crystal file")
    check_output_folder(output)
    done, failed = [], []
    bar = tqdm(files, desc="assemble", unit="file", disable=not cfg.progress, dynamic_ncols=True)
    for path in bar:
        bar.set_postfix_str(path.name)
        try:
            result = assemble(str(path), method=cfg.method, device=cfg.device, **options)
            write_result(result, output / _safe(path.stem), png=cfg.png)
            pred = result.report["prediction"]
            done.append({"file": path.name, "output": str(output / _safe(path.stem)), **_brief(pred)})
        except Exception as error:  # noqa: BLE001 - one file's failure never stops the batch
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if not isinstance(error, ConfigError):
                text = f"{type(error).__name__}: {text}"
            failed.append({"file": path.name, "error": text})
            tqdm.write(f"assemble: {path.name}: failed: {text}", file=sys.stderr)
    summary = {
        "input": str(folder),
        "output": str(output),
        "files": len(files),
        "done": len(done),
        "failed": len(failed),
        "results": done,
        "failures": failed,
    }
    (output / "batch_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    echo(f"{len(done)} done + {len(failed)} failed = {len(files)} files; report in {output}/batch_report.json")
    return summary


def _brief(pred: dict) -> dict:
    keys = ("pm_atom", "pm_center", "identity_pm_atom", "collision_pct", "closest_contact_A", "separation_pct")
    return {key: pred[key] for key in keys if key in pred} | {"density_g_cm3": pred["packing"]["density_g_cm3"]}
