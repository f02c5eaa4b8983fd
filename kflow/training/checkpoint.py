"""Atomic checkpoint files, safe loading and signature checks."""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, CheckpointMismatchError

FORMAT_VERSION = 1


def kflow_version() -> str:
    """The installed kflow version ("unknown" when not installed)."""
    try:
        from importlib.metadata import version

        return version("kflow")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "unknown"


def to_plain(value: Any, name: str = "config") -> Any:
    """Convert a nested config to str/int/float/bool/None/list/dict only.

    OmegaConf containers should be converted with `OmegaConf.to_container(cfg, resolve=True)`
    first; tuples become lists, paths become strings.

    Raises:
        TypeError: naming the first entry that is not plain data.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{name} holds a {type(value).__name__}, which a checkpoint cannot store; "
        "convert it to plain str/int/float/bool/list/dict"
    )


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write state atomically: temp file in the same folder, fsync, rename, fsync folder.

    A reader never sees a half-written file, and a crash leaves the previous file intact.

    Args:
        path: Destination file, e.g. out_dir/checkpoints/last.pt.
        state: Tensors, state dicts and plain data (must load with weights_only=True).

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu", what: str = "file") -> Any:
    """`torch.load(path, weights_only=True)`, any failure as one `CheckpointError` line naming the file.

    A truncated or corrupt file, or one holding Python objects that the safe loader refuses, is
    reported as such; PyTorch's advice to retry with ``weights_only=False`` (which would run
    code from the file) is not passed on.

    Raises:
        CheckpointError: ``<what> <path> cannot be read: <reason>``.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # torch's weights-only refusal (its message advises weights_only=False)
        reason = f"corrupt, or holds objects that a safe load refuses ({_unpickler_detail(error)})"
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, OSError) as error:
        reason = f"corrupt or truncated ({_first_line(error)})"
    raise CheckpointError(f"{what} {path} cannot be read: {reason}")


def _unpickler_detail(error: BaseException) -> str:
    """The reason inside torch's weights-only message (``Unsupported operand 177``), without its advice."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if lines and not lines[0].startswith("Check the documentation"):
            return lines[0]
    return _first_line(error) if "weights_only" not in _first_line(error) else "refused by the weights-only loader"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    expected_signature: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)` and check what it was written for.

    Args:
        path: Checkpoint file.
        map_location: Where tensors are loaded.
        expected_signature: Entries that must equal the checkpoint's `signature` entries.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is truncated or not a checkpoint.
        CheckpointMismatchError: wrong format version or a signature entry differs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = safe_load(path, map_location, what="checkpoint")
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"checkpoint {path} is not a kflow checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"checkpoint {path} has format_version={state['format_version']} but this kflow "
            f"reads format_version={FORMAT_VERSION}"
        )
    if expected_signature is not None:
        check_signature(state.get("signature", {}), expected_signature, path)
    return state


def check_signature(
    found: Mapping[str, Any], expected: Mapping[str, Any], path: str | os.PathLike = "checkpoint"
) -> None:
    """Raise CheckpointMismatchError naming every expected key whose value differs."""
    expected = to_plain(dict(expected), "expected_signature")
    missing = object()
    diffs = [
        (key, found.get(key, missing), value) for key, value in expected.items() if found.get(key, missing) != value
    ]
    if not diffs:
        return

    def show(value):
        return "<absent>" if value is missing else repr(value)

    wrote = ", ".join(f"{key}={show(old)}" for key, old, _ in diffs)
    wants = ", ".join(f"{key}={show(new)}" for key, _, new in diffs)
    raise CheckpointMismatchError(f"checkpoint {path} was written for {wrote} but this run expects {wants}")


def load_model_state(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike = "checkpoint",
    what: str = "model",
) -> None:
    """`model.load_state_dict(strict=True)` with a one-line CheckpointMismatchError on failure."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
    if shapes:
        problems.append(f"shape {shapes[0]}{' (and more)' if len(shapes) > 1 else ''}")
    if problems:
        raise CheckpointMismatchError(f"checkpoint {path} does not fit this {what}: " + "; ".join(problems))
    model.load_state_dict(state_dict)


class CheckpointManager:
    """The checkpoints of one run: `directory/last.pt` (and `directory/best.pt`), written atomically.

    Args:
        directory: Folder holding the checkpoints (created on first save).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    @property
    def last_path(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def exists(self) -> bool:
        return self.last_path.is_file()

    def save(self, state: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.last_path, state)

    def save_best(self, state: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.best_path, state)

    def load(
        self, map_location: str | torch.device = "cpu", expected_signature: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(self.last_path, map_location, expected_signature)
