"""The training loop shared by every kflow branch: DDP-aware, resumable, fault-checked."""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from .checkpoint import FORMAT_VERSION, CheckpointManager, check_signature, kflow_version, load_model_state, to_plain
from .config import TrainConfig
from .device import count_parameters, move_to_device, unwrap_model
from .distributed import DistributedContext
from .draws import StepDraws
from .ema import EMA
from .errors import CheckpointMismatchError, ConfigError, NonFiniteLossError, TrainingInterrupted
from .logs import CSVLogger, plot_loss_curve
from .schedule import make_scheduler
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .signals import StopRequest
from .validation import ValidateFn, ValidationState, run_validation

LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float | torch.Tensor]]
LossFn = Callable[[nn.Module, Any], LossOutput]


@dataclass
class TrainResult:
    """What `Trainer.fit` returns.

    Attributes:
        model: The trained model (unwrapped from DDP/compile), on the training device.
        ema_model: The EMA copy of the model, or None when `ema_decay` is None.
        history: Logged rows (step, loss, lr, grad_norm, wall_s, extras), including rows
            from before a resume.
        step: Optimizer steps completed.
        wall_time_s: Training wall time summed over the original run and its resumes.
        checkpoint_path: The last checkpoint written (None on ranks other than 0).
        best_step: Step of the lowest validation metric (None without validation).
        best_metric: That lowest value (None without validation or no finite value).
        stopped_early: Whether training stopped before `steps` for lack of improvement.
        best_checkpoint_path: checkpoints/best.pt (None without it, or on ranks other than 0).
        val_history: One row per validation (step, metrics, val_s, best), resumes included.
    """

    model: nn.Module
    ema_model: nn.Module | None
    history: list[dict[str, float]]
    step: int
    wall_time_s: float
    checkpoint_path: str | None = None
    best_step: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    best_checkpoint_path: str | None = None
    val_history: list[dict[str, float]] = field(default_factory=list)

    @property
    def val_wall_s(self) -> float:
        """Seconds spent in validation (included in `wall_time_s`)."""
        return sum(row.get("val_s", 0.0) for row in self.val_history)

    @property
    def final_loss(self) -> float:
        """Loss logged at the last step (NaN when nothing was logged)."""
        return self.history[-1]["loss"] if self.history else math.nan


def training_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s training RNG stream (k and noise draws) for a run seed."""
    return int(np.random.SeedSequence([seed, rank, 7]).generate_state(1)[0])


def _accepts_keyword(fn: Callable, name: str) -> bool:
    """Whether `fn` can be called with keyword argument `name`."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters and parameters[name].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


class EpochBatches:
    """Index batches for one rank, fixed by (seed, epoch) so the step fixes the data position.

    Uses `DistributedSampler(shuffle=True, seed, drop_last=True).set_epoch(epoch)`; at every
    step the ranks' batches together are the same global batch a 1-process run draws.

    Args:
        dataset_size: Number of items in the dataset.
        global_batch: Global batch size (divisible by world_size).
        world_size: Number of ranks.
        rank: This rank.
        seed: Data-order seed.
    """

    def __init__(self, dataset_size: int, global_batch: int, world_size: int, rank: int, seed: int):
        self.dataset_size = dataset_size
        self.per_rank = global_batch // world_size
        self.steps_per_epoch = dataset_size // global_batch
        self.world_size, self.rank, self.seed = world_size, rank, seed

    def __call__(self, epoch: int) -> list[list[int]]:
        sampler = DistributedSampler(
            range(self.dataset_size),
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)
        return [indices[i * self.per_rank : (i + 1) * self.per_rank] for i in range(self.steps_per_epoch)]


def _check_settings(cfg: TrainConfig, validate_fn: ValidateFn | None, val_metric: str | None) -> None:
    """Refuse a wrong config type, invalid settings, or validation settings that do not fit together."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    if cfg.val_every is not None and validate_fn is None:
        raise ConfigError(f"val_every={cfg.val_every} but this trainer was given no validate_fn")
    if validate_fn is not None and not val_metric:
        raise ConfigError("validate_fn needs val_metric, the name of the metric to minimise")


class Trainer:
    """Runs `cfg.steps` AdamW steps of `loss_fn` on batches of `dataset`.

    Under torchrun the process group is initialised here (unless the caller made a
    `DistributedContext` first and passes it), the model is wrapped in DDP, each rank draws
    `batch_size // world_size` items, logged losses are means over ranks and only rank 0
    writes files.

    Args:
        model: The network; moved to `cfg.device`.
        loss_fn: `loss_fn(model, batch) -> loss | (loss, extras)`; `batch` is already on the
            device and `model` may be DDP/compile-wrapped, so call `model(...)` (its forward)
            for gradients to be synchronised. Draw random numbers from the global torch RNG
            (it is checkpointed), or give `loss_fn` a `draws` keyword: it then receives a
            `StepDraws` whose per-sample draws are identical in 1-process and N-rank runs.
        dataset: Map-style dataset (`len`, `getitem`).
        cfg: Optimisation settings.
        collate_fn: Turns a list of items into a batch (default: torch default_collate).
        run_config: The full run configuration (plain data) stored in the checkpoint.
        signature: Entries a checkpoint must match on resume (e.g. model name, preset).
        dist_context: An existing DistributedContext (then the caller owns the process group).
        validate_fn: `validate_fn(model) -> {metric: value}`, called every `cfg.val_every` steps
            and at the last step, on rank 0 only, with the EMA model when `ema_decay` is set
            (else the raw model) in eval mode under no_grad; the RNG streams are restored
            afterwards. Writes val_log.csv, val_curve.png and checkpoints/best.pt.
        val_metric: The key of `validate_fn`'s result to minimise (best.pt, early stopping).

    Raises:
        ConfigError: before any work, when the settings cannot work with this data/machine.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        dataset,
        cfg: TrainConfig,
        *,
        collate_fn: Callable | None = None,
        run_config: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
        dist_context: DistributedContext | None = None,
        validate_fn: ValidateFn | None = None,
        val_metric: str | None = None,
    ):
        _check_settings(cfg, validate_fn, val_metric)
        self.validate_fn = validate_fn
        self.validation = ValidationState(metric=val_metric or "")
        self.cfg = cfg
        self._loss_takes_draws = _accepts_keyword(loss_fn, "draws")
        self._owns_context = dist_context is None
        self.dist = dist_context or DistributedContext.from_env(cfg.device)
        self.device = self.dist.device
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size={cfg.batch_size} is not divisible by the {self.dist.world_size} ranks")
        if len(dataset) < cfg.batch_size:
            raise ConfigError(f"dataset has {len(dataset)} items, fewer than batch_size={cfg.batch_size}")
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.run_config = to_plain(dict(run_config or {}), "run_config")
        self.signature = {
            "model": type(model).__name__,
            "num_parameters": count_parameters(model),
            "kflow_version": kflow_version(),
            **to_plain(dict(signature or {}), "signature"),
        }
        self.out_dir = Path(cfg.out_dir)
        self.checkpoints = CheckpointManager(self.out_dir / "checkpoints")
        self.batches = EpochBatches(len(dataset), cfg.batch_size, self.dist.world_size, self.dist.rank, cfg.seed)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = make_scheduler(
            self.optimizer,
            steps=cfg.steps,
            warmup_steps=cfg.warmup_steps,
            schedule=cfg.lr_schedule,
            min_ratio=cfg.lr_min_ratio,
        )
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay is not None else None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._elapsed_before = 0.0
        self._start_time = time.perf_counter()
        self._last_saved_step: int | None = None
        self._wrapped: nn.Module | None = None

    # ----------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (collective: every rank must call it)."""
        rng_states = self.dist.all_gather_objects([capture_rng_state()])
        return {
            "format_version": FORMAT_VERSION,
            "kflow_version": kflow_version(),
            "signature": dict(self.signature),
            "step": self.step,
            "data_position": {
                "epoch": self.step // self.batches.steps_per_epoch,
                "batch_in_epoch": self.step % self.batches.steps_per_epoch,
                "steps_per_epoch": self.batches.steps_per_epoch,
                "global_batch": self.cfg.batch_size,
                "seed": self.cfg.seed,
                "dataset_size": len(self.dataset),
            },
            "model": unwrap_model(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states,
            "world_size": self.dist.world_size,
            "history": list(self.history),
            "validation": self.validation.to_dict(),
            "wall_time_s": self._elapsed(),
            "config": self.cfg.to_dict(),
            "run_config": self.run_config,
        }

    def load_state_dict(self, state: Mapping[str, Any], path: str = "checkpoint") -> None:
        """Restore from a checkpoint written by `state_dict` (signature already checked)."""
        position = state["data_position"]
        expected = {"global_batch": self.cfg.batch_size, "seed": self.cfg.seed, "dataset_size": len(self.dataset)}
        check_signature({k: position.get(k) for k in expected}, expected, path)
        load_model_state(self.model, state["model"], path)
        if self.ema is not None:
            if state.get("ema") is None:
                raise CheckpointMismatchError(
                    f"checkpoint {path} has no EMA weights but this run expects ema_decay={self.cfg.ema_decay}"
                )
            load_model_state(self.ema.module, state["ema"], path, what="EMA model")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.history = [dict(row) for row in state["history"]]
        self._warn_on_changed_plan(state, path)
        self.validation = ValidationState.from_dict(state.get("validation"), self.validation.metric)
        self.validation.stopped_early = self.validation.exhausted(self.cfg.early_stop_patience)
        self._elapsed_before = float(state["wall_time_s"])
        self._last_saved_step = self.step
        if len(state["rng"]) == self.dist.world_size:
            restore_rng_state(state["rng"][self.dist.rank])
        else:
            warnings.warn(
                f"checkpoint {path} was written by {len(state['rng'])} rank(s), this run "
                f"has {self.dist.world_size}: RNG streams are reseeded, so the run will "
                "not repeat the original exactly",
                stacklevel=2,
            )
            seed_everything(training_seed(self.cfg.seed + self.step, self.dist.rank))

    def _warn_on_changed_plan(self, state: Mapping[str, Any], path: str) -> None:
        """Warn when a resume changes the cosine plan or the validation metric (not an exact resume)."""
        saved_steps = state.get("config", {}).get("steps")
        if self.cfg.lr_schedule == "cosine" and saved_steps is not None and saved_steps != self.cfg.steps:
            warnings.warn(
                f"checkpoint {path} planned steps={saved_steps}, this run plans {self.cfg.steps}: "
                "the cosine learning rate follows the new plan from here",
                stacklevel=3,
            )
        saved = state.get("validation") or {}
        if self._validation_on() and saved.get("history") and saved.get("metric") != self.validation.metric:
            warnings.warn(
                f"checkpoint {path} kept the best {saved.get('metric')!r}, this run minimises "
                f"{self.validation.metric!r}: best value and patience start afresh",
                stacklevel=3,
            )

    def save(self) -> Path | None:
        """Write checkpoints/last.pt (rank 0 writes; every rank must call)."""
        state = self.state_dict()
        self._last_saved_step = self.step
        if self.dist.is_main:
            return self.checkpoints.save(state)
        return None

    # ----------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        """Train until `cfg.steps`, resuming from the last checkpoint when `cfg.resume`.

        Raises:
            NonFiniteLossError: the loss or gradient norm became NaN/inf.
            TrainingInterrupted: SIGTERM or Ctrl-C; a checkpoint of the last finished step
                was written first.
        """
        self._start_time = time.perf_counter()
        self._begin()
        logger = CSVLogger(self.out_dir / "train_log.csv", self.history) if self.dist.is_main else None
        val_logger = None
        if self.dist.is_main and self._validation_on():
            val_logger = CSVLogger(self.out_dir / "val_log.csv", self.validation.history)
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc="train",
            mininterval=2.0,
            dynamic_ncols=True,
            file=sys.stderr,
            disable=not (self.cfg.progress and self.dist.is_main),
        )
        try:
            with StopRequest(announce=self.dist.is_main) as stop:
                last_path = self._loop(logger, val_logger, bar, stop)
        finally:
            bar.close()
            if logger is not None and logger.rows:
                plot_loss_curve(logger.path, self.out_dir / "loss_curve.png")
            if val_logger is not None and val_logger.rows:
                keys = [k for k in val_logger.fieldnames if k not in ("step", "val_s", "best")]
                plot_loss_curve(val_logger.path, self.out_dir / "val_curve.png", keys=keys)
        best_path = self.checkpoints.best_path
        result = TrainResult(
            model=unwrap_model(self.model),
            ema_model=self.ema.module if self.ema is not None else None,
            history=list(self.history),
            step=self.step,
            wall_time_s=self._elapsed(),
            checkpoint_path=str(last_path) if last_path else None,
            best_step=self.validation.best_step,
            best_metric=self.validation.best_value,
            stopped_early=self.validation.stopped_early,
            best_checkpoint_path=str(best_path) if self.dist.is_main and best_path.is_file() else None,
            val_history=[dict(row) for row in self.validation.history],
        )
        self._close_context()
        return result

    def _loop(
        self, logger: CSVLogger | None, val_logger: CSVLogger | None, bar: tqdm, stop: StopRequest
    ) -> Path | None:
        """Steps until cfg.steps (or early stopping); returns the last checkpoint path (rank 0)."""
        last_path = None
        for batch in self._batch_stream():
            row = self._train_step(batch, logger)
            bar.update(1)
            if row is not None:
                self.history.append(row)
                if logger is not None:
                    logger.log(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
            if self._validation_due():
                self._validate(val_logger)
            if self.step % self.cfg.ckpt_every == 0:
                last_path = self.save()
            if self.validation.stopped_early:
                self._announce_early_stop()
                break
            if self._any_rank(stop.requested is not None) and self.step < self.cfg.steps:
                self._stop_interrupted(stop.requested or "SIGTERM")
        if self._last_saved_step != self.step:
            last_path = self.save()
        elif self.dist.is_main and self.checkpoints.exists():
            last_path = self.checkpoints.last_path
        return last_path

    def _begin(self) -> None:
        resumed = False
        if self.cfg.resume and self._checkpoint_visible():
            path = self.checkpoints.last_path
            state = self.checkpoints.load(self.device, expected_signature=self.signature)
            self.load_state_dict(state, str(path))
            resumed = True
            if self.dist.is_main:
                print(f"resumed from {path} at step {self.step}", file=sys.stderr)
        if not resumed:
            if self.dist.is_main and self.checkpoints.exists():
                print(
                    f"resume=false: starting fresh; {self.checkpoints.last_path} will be overwritten", file=sys.stderr
                )
            if self.dist.is_main and self.checkpoints.best_path.is_file():
                self.checkpoints.best_path.unlink()  # a stale best of an earlier run
            seed_everything(training_seed(self.cfg.seed, self.dist.rank))
        if self.step > self.cfg.steps:
            raise ConfigError(f"checkpoint is at step {self.step}, beyond steps={self.cfg.steps}")
        self._wrapped = self._wrap(self.model)

    # ----------------------------------------------------------------- validation
    def _validation_on(self) -> bool:
        return self.validate_fn is not None and self.cfg.val_every is not None

    def _validation_due(self) -> bool:
        """Every val_every steps and at the last step (once per step)."""
        if not self._validation_on() or self.validation.last_step == self.step:
            return False
        return self.step % self.cfg.val_every == 0 or self.step == self.cfg.steps

    def _validation_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else unwrap_model(self.model)

    def _validate(self, val_logger: CSVLogger | None) -> None:
        """Validate on rank 0, share the metrics, keep best.pt and the patience counter."""
        payload: dict[str, Any] = {}
        failure: BaseException | None = None
        if self.dist.is_main:
            try:
                metrics, seconds = run_validation(self.validate_fn, self._validation_model())
                payload = {"metrics": metrics, "seconds": seconds}
            except Exception as error:  # noqa: BLE001 - shared with the other ranks, then re-raised
                failure, payload = error, {"error": f"{type(error).__name__}: {error}"}
        payload = self.dist.broadcast_object(payload)
        if "error" in payload:
            self._close_context()
            if failure is not None:
                raise failure
            raise RuntimeError(f"validation failed on rank 0 at step {self.step}: {payload['error']}")
        try:
            improved = self.validation.record(
                self.step, payload["metrics"], payload["seconds"], self.cfg.early_stop_patience
            )
        except KeyError as error:
            self._close_context()
            raise ConfigError(error.args[0]) from None
        if val_logger is not None:
            val_logger.log(self.validation.history[-1])
        if improved:
            state = self.state_dict()
            if self.dist.is_main:
                self.checkpoints.save_best(state)

    def _announce_early_stop(self) -> None:
        if self.dist.is_main:
            v = self.validation
            print(
                f"early stop at step {self.step}: no lower {v.metric} in {v.bad_validations} validations "
                f"(best {v.best_value} at step {v.best_step}, {self.checkpoints.best_path})",
                file=sys.stderr,
            )

    def _checkpoint_visible(self) -> bool:
        """Whether last.pt exists on rank 0 (the decision is shared so all ranks agree)."""
        return bool(self.dist.broadcast_object(self.checkpoints.exists()))

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.is_distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=device_ids, find_unused_parameters=self.cfg.find_unused_parameters
            )
        if self.cfg.compile:
            model = torch.compile(model, backend=self.cfg.compile_backend)
        return model

    def _batch_stream(self) -> Iterator[Any]:
        """Batches for steps self.step+1 .. cfg.steps (the position follows from the step)."""
        per_epoch = self.batches.steps_per_epoch
        while self.step < self.cfg.steps and not self.validation.stopped_early:
            epoch, offset = divmod(self.step, per_epoch)
            remaining = self.cfg.steps - self.step
            index_batches = self.batches(epoch)[offset : offset + remaining]
            generator = torch.Generator().manual_seed(training_seed(self.cfg.seed + epoch, 0))
            loader = DataLoader(
                self.dataset,
                batch_sampler=index_batches,
                collate_fn=self.collate_fn,
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                generator=generator,
            )
            yield from loader

    def _autocast(self):
        if self.cfg.amp == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_step(self, batch, logger: CSVLogger | None) -> dict[str, float] | None:
        """One optimizer step; returns the log row on logging steps."""
        step = self.step + 1
        self._wrapped.train()
        batch = move_to_device(batch, self.device, non_blocking=True)
        with self._autocast():
            if self._loss_takes_draws:
                draws = StepDraws(self.cfg.seed, step, self.dist.rank, self.dist.world_size)
                output = self.loss_fn(self._wrapped, batch, draws=draws)
            else:
                output = self.loss_fn(self._wrapped, batch)
        loss, extras = output if isinstance(output, tuple) else (output, {})
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"loss_fn must return a scalar tensor (or (scalar tensor, dict)), got {type(loss).__name__}"
            )
        detached = loss.detach().float().reshape(())
        stats = self.dist.all_reduce_sum(
            torch.stack(
                [
                    torch.where(torch.isfinite(detached), detached, torch.zeros_like(detached)),
                    (~torch.isfinite(detached)).float(),
                ]
            )
        )
        if stats[1].item() > 0:
            self._stop_non_finite(step, "loss", detached.item(), logger)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not torch.isfinite(grad_norm):
            self._stop_non_finite(step, "gradient norm", grad_norm.item(), logger)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step)
        self.step = step
        if step % self.cfg.log_every and step != self.cfg.steps:
            return None
        row = {
            "step": step,
            "loss": stats[0].item() / self.dist.world_size,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "wall_s": self._elapsed(),
        }
        row.update(self._mean_extras(extras))
        return row

    def _mean_extras(self, extras: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
        if not extras:
            return {}
        keys = sorted(extras)
        values = torch.tensor([float(extras[k]) for k in keys], dtype=torch.float64, device=self.device)
        means = self.dist.all_reduce_mean(values).tolist()
        return dict(zip(keys, means))

    def _stop_non_finite(self, step: int, what: str, value: float, logger: CSVLogger | None) -> None:
        """Keep (or write) the last good checkpoint, then raise NonFiniteLossError."""
        if self._last_saved_step is None and all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.save()
        if logger is not None and logger.rows:
            plot_loss_curve(logger.path, self.out_dir / "loss_curve.png")
        path = self.checkpoints.last_path
        kept = (
            f"last good checkpoint {path} (step {self._last_saved_step})"
            if self._last_saved_step is not None
            else "no checkpoint was written"
        )
        self._close_context()
        raise NonFiniteLossError(
            f"{what} became {value} at step {step}; training stopped, {kept}",
            step=step,
            checkpoint_path=str(path) if self._last_saved_step is not None else None,
        )

    def _any_rank(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any rank (one tiny all-reduce)."""
        if not self.dist.is_distributed:
            return flag
        return bool(self.dist.all_reduce_sum(torch.tensor([float(flag)], device=self.device)) > 0)

    def _stop_interrupted(self, signal_name: str) -> None:
        """Checkpoint the finished step, then raise TrainingInterrupted (on every rank)."""
        if self._last_saved_step != self.step:
            self.save()
        path = self.checkpoints.last_path
        self._close_context()
        raise TrainingInterrupted(
            f"training stopped by {signal_name} at step {self.step}; "
            f"checkpoint {path} written; rerun with resume=true to continue",
            step=self.step,
            checkpoint_path=str(path),
            signal_name=signal_name,
        )

    def _close_context(self) -> None:
        """Destroy the process group if this Trainer created it (not when the caller did)."""
        if self._owns_context:
            self.dist.shutdown()

    def _elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._start_time
