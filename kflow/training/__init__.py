"""Device-agnostic training pieces shared by the branches (no Hydra).

- `Trainer` / `TrainConfig` / `TrainResult`: the AdamW loop with warm-up, gradient clipping,
  EMA, bf16 autocast, torch.compile, DDP under torchrun, CSV log, loss-curve PNG.
- Checkpoints: `save_checkpoint` (atomic: temp file, fsync, rename), `load_checkpoint`
  (`torch.load(weights_only=True)`, signature check), `CheckpointManager`.
- Exact resume: the data position follows from the step (per-epoch permutation seeded by
  (seed, epoch), sharded like DistributedSampler), and the python/numpy/torch/CUDA RNG
  states of every rank are stored in the checkpoint.
- Faults: `ConfigError` (bad settings, raised before work), `CheckpointMismatchError`
  (checkpoint of another model/version), `NonFiniteLossError` (NaN/inf loss; the last good
  checkpoint is kept), `TrainingInterrupted` (SIGTERM/Ctrl-C: the current step finishes and a
  checkpoint is written first).
- Validation (`Trainer(validate_fn=..., val_metric=...)`, `val_every`): val_log.csv,
  val_curve.png, checkpoints/best.pt, early stopping (`early_stop_patience`); the best value,
  patience counter and schedule position are checkpointed. `lr_schedule`: constant or cosine
  (`lr_factor`).
- `DistributedContext`: rank, world size, all-reduce, `all_gather_objects`, barrier.
- `exit_on_training_error(prog)`: for scripts, one stderr line and an exit code instead of a
  traceback for config/checkpoint errors (2), NaN loss (3) and SIGTERM/Ctrl-C stops (143/130).
"""

from .checkpoint import (
    FORMAT_VERSION,
    CheckpointManager,
    check_signature,
    kflow_version,
    load_checkpoint,
    load_model_state,
    safe_load,
    save_checkpoint,
    to_plain,
)
from .cli import exit_on_training_error
from .config import TrainConfig, check_choice, check_dir, check_range
from .device import count_parameters, move_to_device, resolve_device, timed_calls, unwrap_model
from .distributed import DistributedContext, launched_by_torchrun
from .draws import StepDraws
from .ema import EMA
from .errors import CheckpointError, CheckpointMismatchError, ConfigError, NonFiniteLossError, TrainingInterrupted
from .logs import CSVLogger, plot_loss_curve, read_csv_log
from .schedule import LR_SCHEDULES, lr_factor, make_scheduler
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .signals import StopRequest
from .trainer import EpochBatches, Trainer, TrainResult, training_seed
from .validation import ValidationState, run_validation

__all__ = [
    "capture_rng_state",
    "check_choice",
    "check_dir",
    "check_range",
    "check_signature",
    "CheckpointError",
    "CheckpointManager",
    "CheckpointMismatchError",
    "ConfigError",
    "count_parameters",
    "CSVLogger",
    "DistributedContext",
    "EMA",
    "EpochBatches",
    "exit_on_training_error",
    "FORMAT_VERSION",
    "kflow_version",
    "launched_by_torchrun",
    "load_checkpoint",
    "load_model_state",
    "lr_factor",
    "LR_SCHEDULES",
    "make_scheduler",
    "move_to_device",
    "NonFiniteLossError",
    "plot_loss_curve",
    "read_csv_log",
    "resolve_device",
    "timed_calls",
    "restore_rng_state",
    "run_validation",
    "safe_load",
    "save_checkpoint",
    "seed_everything",
    "StepDraws",
    "StopRequest",
    "to_plain",
    "TrainConfig",
    "Trainer",
    "training_seed",
    "TrainingInterrupted",
    "TrainResult",
    "unwrap_model",
    "ValidationState",
]
