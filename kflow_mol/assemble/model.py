"""The shipped model files: loading, checking and exporting a trained assembly model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kflow.training import CheckpointError, ConfigError, load_checkpoint
from kflow_mol.assemble.common import MAX_ATOMS, AssembleError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "pretrained" / "assembly_default.pt"
"""The shipped model, trained on local starts (``scripts/export_default_model.py`` writes it)."""


DEFAULT_SCRAMBLED_MODEL = DEFAULT_MODEL.with_name("assembly_default_scrambled.pt")
"""The shipped model for scrambled starts, when there is one: ``model="default"`` uses it for
``start="scrambled"`` (else :data:`DEFAULT_MODEL`)."""


PACKAGE_KEY = "kflow_mol_assemble"
"""The entry of a shipped model file that describes it (:func:`package_info`)."""


PACKAGE_FORMAT = 1
"""Layout version of :data:`PACKAGE_KEY`; a file of another version is refused."""


EXPECTED_DEFAULT = {"system": "kflow", "mode": "rigid", "head": "rigid", "K": 2, "preset": "S", "start": "local"}
"""What this code expects of the shipped model; :func:`load_model` checks the file against it.
A better network with other settings changes this line and re-exports (MODEL_CARD.md)."""


@dataclass
class LoadedModel:
    """A trained assembly model ready to predict.

    Attributes:
        path: the checkpoint file.
        name: its method name (``kflow_K2``).
        cfg: its run config (:class:`~kflow_mol.config.AssemblyConfig`).
        run: the flow and network (:class:`~kflow_mol.experiment.TrainedRun`).
        info: what the file says about itself (shipped files), or {}.
    """

    path: Path
    name: str
    cfg: Any
    run: Any
    info: dict

    @property
    def max_atoms(self) -> int:
        return int(self.info.get("max_atoms", MAX_ATOMS))

    @property
    def trained_start(self) -> str | None:
        return self.info.get("start") or self.cfg.data.start

    def describe(self) -> dict:
        """The report's ``model`` entry."""
        return {
            "path": str(self.path),
            "name": self.name,
            "K": self.cfg.K,
            "preset": self.cfg.model.preset,
            "system": self.cfg.system,
            "trained_on": self.info.get("data", self.cfg.data.source),
            "trained_start": self.trained_start,
            "train_steps": self.info.get("train_steps"),
            "sample_method": self.cfg.sample.method,
            "sample_steps": self.cfg.sample.steps,
        }


def package_info(cfg: Any, **extra) -> dict:
    """The self-description a shipped model file carries under :data:`PACKAGE_KEY`."""
    return {
        "format": PACKAGE_FORMAT,
        "system": cfg.system,
        "mode": cfg.flow.mode,
        "head": cfg.model.head,
        "K": cfg.K,
        "preset": cfg.model.preset,
        "start": cfg.data.start,
        "max_atoms": MAX_ATOMS,
        **extra,
    }


def resolve_model_path(model: str | Path, start: str = "local") -> Path:
    """``"default"`` -> the shipped model for ``start`` (:data:`DEFAULT_SCRAMBLED_MODEL` for
    scrambled starts when it is shipped, else :data:`DEFAULT_MODEL`); anything else is a path."""
    if str(model) != "default":
        return Path(model).expanduser()
    if start == "scrambled" and DEFAULT_SCRAMBLED_MODEL.is_file():
        return DEFAULT_SCRAMBLED_MODEL
    return DEFAULT_MODEL


def expected_of(path: Path) -> dict | None:
    """What this code expects of a shipped file (None for any other checkpoint)."""
    path = Path(path).resolve()
    if path == DEFAULT_MODEL.resolve():
        return EXPECTED_DEFAULT
    if path == DEFAULT_SCRAMBLED_MODEL.resolve():
        return {**EXPECTED_DEFAULT, "start": "scrambled"}
    return None


_MODEL_CACHE: dict[tuple[str, float], LoadedModel] = {}


def load_model(model: str | Path = "default", device: str = "cpu", start: str = "local") -> LoadedModel:
    """Load the shipped model or any checkpoint ``scripts/train_assembly.py`` wrote (``weights_only=True``).

    Checks: the file exists and is a kflow checkpoint of this format version; it holds an
    assembly run config that this code builds (else: another system or version); the network
    accepts its weights exactly; a shipped file's self-description agrees with its run config
    and, for the shipped files, with :data:`EXPECTED_DEFAULT` (:func:`expected_of`).

    Args:
        model: ``"default"`` or a checkpoint path.
        device: where the network goes.
        start: the start preset it will be used with (picks the shipped file for ``"default"``).

    Raises:
        AssembleError: one line naming the problem.
    """
    from kflow_mol.config import AssemblyConfig, run_name, to_config
    from kflow_mol.experiment import TrainedRun, build_flow, checkpoint_network

    path = resolve_model_path(model, start)
    if not path.is_file():
        if str(model) == "default":
            raise AssembleError(
                f"the shipped model {path} is missing: run scripts/export_default_model.py checkpoint=<best.pt>, "
                "or pass model=<checkpoint>"
            )
        raise AssembleError(f"checkpoint {path} does not exist")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    try:
        state = load_checkpoint(path, map_location=device)
    except (CheckpointError, FileNotFoundError) as error:
        raise AssembleError(str(error).strip().splitlines()[0]) from None
    saved = state.get("run_config")
    needed = ("K", "system", "model", "flow", "data", "translation_scale")
    if not isinstance(saved, dict) or any(name not in saved for name in needed):
        raise AssembleError(
            f"checkpoint {path} is not a molecular-assembly checkpoint (written by another system: no assembly "
            "run config with K, system, model, flow, data and translation_scale)"
        )
    saved = dict(saved)
    sigma = float(saved.pop("translation_scale"))
    try:
        cfg = to_config(saved, AssemblyConfig)
        flow = build_flow(cfg, sigma)
        network = checkpoint_network(cfg, state, device)
    except (ConfigError, ValueError, RuntimeError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AssembleError(
            f"checkpoint {path} was written by another version of kflow_mol (this code cannot rebuild it: {first})"
        ) from None
    info = state.get(PACKAGE_KEY) or {}
    if info:
        _check_package(path, info, cfg, expected=expected_of(path))
    loaded = LoadedModel(path, run_name(cfg), cfg, TrainedRun(run_name(cfg), flow, network, None), dict(info))
    _MODEL_CACHE[key] = loaded
    return loaded


def _check_package(path: Path, info: dict, cfg: Any, expected: dict | None) -> None:
    if info.get("format") != PACKAGE_FORMAT:
        raise AssembleError(
            f"model file {path} has package format {info.get('format')!r}, this code reads {PACKAGE_FORMAT}: "
            "re-export it with scripts/export_default_model.py"
        )
    actual = package_info(cfg)
    for name in ("system", "mode", "head", "K", "preset", "start"):
        if info.get(name) != actual[name]:
            raise AssembleError(
                f"model file {path} says {name}={info.get(name)!r} but its run config builds {name}={actual[name]!r}"
            )
    for name, value in (expected or {}).items():
        if info.get(name) != value:
            raise AssembleError(
                f"model file {path} is a {name}={info.get(name)!r} model; this code expects {name}={value!r} "
                "(EXPECTED_DEFAULT in kflow_mol/assemble/model.py)"
            )


def export_model(checkpoint: str | Path, output: str | Path = DEFAULT_MODEL, max_mb: float = 5.0, **extra) -> Path:
    """Write a training checkpoint as a shipped model file: weights (EMA when kept) + run config +
    self-description (:func:`package_info`), no optimizer state; ``scripts/export_default_model.py``.

    The checkpoint is loaded and checked first (:func:`load_model`); writing the default file
    also checks it against :data:`EXPECTED_DEFAULT`.

    Raises:
        AssembleError: a bad checkpoint, a mismatch, or a file over ``max_mb`` MB.
    """
    from datetime import UTC, datetime

    from kflow.training.checkpoint import save_checkpoint

    loaded = load_model(checkpoint)
    state = load_checkpoint(Path(checkpoint))
    info = package_info(
        loaded.cfg,
        data=loaded.cfg.data.source,
        train_steps=int(state.get("step") or 0),
        source_checkpoint=str(checkpoint),
        exported_utc=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    )
    output = Path(output)
    if expected_of(output) is not None:
        _check_package(output, info, loaded.cfg, expected_of(output))
    shipped = {
        "format_version": state["format_version"],
        "kflow_version": state.get("kflow_version"),
        "signature": state.get("signature", {}),
        "step": state.get("step"),
        "run_config": state["run_config"],
        "model": state["ema"] if state.get("ema") is not None else state["model"],
        "ema": None,
        PACKAGE_KEY: info,
    }
    save_checkpoint(output, shipped)
    output.chmod(0o644)  # the atomic writer's temp file is private; a package file is readable by all
    size_mb = output.stat().st_size / 1e6
    if size_mb > max_mb:
        output.unlink()
        raise AssembleError(f"{output}: {size_mb:.1f} MB > {max_mb} MB: too large to ship in the package")
    load_model(output)  # the written file loads and passes its own checks
    return output
