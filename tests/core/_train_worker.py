"""A small real K-Flow training problem, and a CLI that trains it (used under torchrun/SIGKILL).

Data: 1-D signals of length 16 made of a few random low-frequency sinusoids plus a little
noise. Transform: 4-band Fourier (Hartley). Model: an MLP velocity field v(x_k, k/K).

CLI: `python tests/core/_train_worker.py --out DIR --steps N ...` trains with the Trainer and,
on rank 0, writes DIR/result.json (final loss, history, eval losses gathered from every rank)
and DIR/params.pt (the trained state dict).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from kflow.loss import flow_matching_loss, sample_k
from kflow.path import KAmplitudePath
from kflow.training import DistributedContext, NonFiniteLossError, TrainConfig, Trainer, seed_everything
from kflow.transforms.fourier import FourierTransform

LENGTH = 16
NUM_BANDS = 4


class SmoothSignals(torch.utils.data.Dataset):
    """`size` signals of length 16: sums of 3 random sinusoids of frequency <= 3, plus noise.

    With `paired_noise`, item i also carries its own source sample x0 and a uniform draw u
    (so k = u * K), making the loss a deterministic function of the batch.
    """

    def __init__(self, size: int = 64, seed: int = 1, paired_noise: bool = False):
        generator = torch.Generator().manual_seed(seed)
        grid = torch.arange(LENGTH) / LENGTH
        freqs = torch.randint(1, 4, (size, 3), generator=generator)
        phases = 2 * math.pi * torch.rand(size, 3, generator=generator)
        amplitudes = torch.randn(size, 3, generator=generator)
        waves = torch.sin(2 * math.pi * freqs[..., None] * grid + phases[..., None])
        self.x1 = (amplitudes[..., None] * waves).sum(1) + 0.05 * torch.randn(size, LENGTH, generator=generator)
        self.paired_noise = paired_noise
        self.x0 = torch.randn(size, LENGTH, generator=generator)
        self.u = torch.rand(size, generator=generator)

    def __len__(self) -> int:
        return self.x1.shape[0]

    def __getitem__(self, index: int):
        if self.paired_noise:
            return {"x1": self.x1[index], "x0": self.x0[index], "u": self.u[index]}
        return {"x1": self.x1[index]}


class VelocityMLP(nn.Module):
    """v(x, s): (B, 16), (B,) -> (B, 16)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(LENGTH + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, LENGTH)
        )

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, s[:, None].to(x.dtype)], dim=1))


def make_path() -> KAmplitudePath:
    return KAmplitudePath(FourierTransform((LENGTH,), num_bands=NUM_BANDS))


class KFlowLoss:
    """Flow-matching loss on the K-amplitude path; noise from the batch or the global RNG."""

    def __init__(self, path: KAmplitudePath, step_delay_s: float = 0.0):
        self.path = path
        self.step_delay_s = step_delay_s

    def __call__(self, model: nn.Module, batch: dict):
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        x1 = batch["x1"]
        if "x0" in batch:
            x0, k = batch["x0"], batch["u"] * self.path.num_bands
        else:
            x0 = torch.randn_like(x1)
            k = sample_k(x1.shape[0], self.path.num_bands, device=x1.device)
        sample = self.path.sample(x0, x1, k)
        pred = model(sample.x_k, k / self.path.num_bands)
        loss = flow_matching_loss(pred.float(), sample)
        return loss, {"mean_k": float(k.mean())}


@torch.no_grad()
def eval_losses(model: nn.Module, path: KAmplitudePath, indices: list[int]) -> list[tuple[int, float]]:
    """Per-item loss at fixed (x0, k) draws for the given evaluation indices."""
    data = SmoothSignals(size=32, seed=99, paired_noise=True)
    out = []
    for i in indices:
        item = data[i]
        k = item["u"][None] * path.num_bands
        sample = path.sample(item["x0"][None], item["x1"][None], k)
        pred = model(sample.x_k, k / path.num_bands)
        out.append((i, float(flow_matching_loss(pred, sample))))
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--ckpt-every", type=int, default=10)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--paired-noise", action="store_true")
    parser.add_argument("--ema-decay", type=float, default=None)
    parser.add_argument("--step-delay-s", type=float, default=0.0)
    parser.add_argument(
        "--resume-check-at",
        type=int,
        default=None,
        help="also train with global-RNG noise in OUT/rng_whole, and in "
        "OUT/rng_split stop at this step and resume with a new Trainer",
    )
    parser.add_argument("--compile-backend", default=None)
    parser.add_argument("--val-every", type=int, default=None, help="validate (eval loss of 8 items) every N steps")
    parser.add_argument("--early-stop-patience", type=int, default=None)
    parser.add_argument(
        "--val-metric", default="val_loss", help="val_loss, or rising (val_loss + step: never improves)"
    )
    parser.add_argument(
        "--nan-check-at",
        type=int,
        default=None,
        help="also train in OUT/nan_run with the last rank's loss NaN from this step",
    )
    return parser.parse_args(argv)


def train_run(
    args, context: DistributedContext, out_dir: str, steps: int, resume: bool, paired_noise: bool, loss_fn=None
):
    seed_everything(args.seed)
    cfg = TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ckpt_every=args.ckpt_every,
        log_every=args.log_every,
        seed=args.seed,
        out_dir=out_dir,
        resume=resume,
        ema_decay=args.ema_decay,
        progress=False,
        compile=args.compile_backend is not None,
        compile_backend=args.compile_backend or "inductor",
        val_every=getattr(args, "val_every", None),
        early_stop_patience=getattr(args, "early_stop_patience", None),
    )
    holder = {}

    def validate(model: nn.Module) -> dict[str, float]:
        VAL_CALLS.append(holder["trainer"].step)
        loss = sum(value for _, value in eval_losses(model, make_path(), list(range(8)))) / 8
        return {"val_loss": loss, "rising": loss + holder["trainer"].step}

    trainer = Trainer(
        VelocityMLP(),
        loss_fn or KFlowLoss(make_path(), args.step_delay_s),
        SmoothSignals(paired_noise=paired_noise),
        cfg,
        dist_context=context,
        signature={"problem": "smooth-signals-16"},
        run_config=vars(args),
        validate_fn=validate if cfg.val_every is not None else None,
        val_metric=getattr(args, "val_metric", "val_loss") if cfg.val_every is not None else None,
    )
    holder["trainer"] = trainer
    return trainer.fit()


VAL_CALLS: list[int] = []
"""Steps at which this process ran the validate_fn (rank 0 only under DDP)."""


def resume_check(args, context: DistributedContext) -> dict:
    """Unbroken vs stopped-and-resumed runs (global-RNG noise) inside this launch."""
    whole = train_run(args, context, f"{args.out}/rng_whole", args.steps, False, False)
    train_run(args, context, f"{args.out}/rng_split", args.resume_check_at, False, False)
    resumed = train_run(args, context, f"{args.out}/rng_split", args.steps, True, False)
    difference = max(
        (a - b).abs().max().item()
        for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values())
    )
    return {
        "whole_final_loss": whole.final_loss,
        "resumed_final_loss": resumed.final_loss,
        "resumed_step": resumed.step,
        "max_param_difference": difference,
    }


class NaNOnLastRank(KFlowLoss):
    """Fault injection: the last rank's loss is NaN from call `at_call` on."""

    def __init__(self, path: KAmplitudePath, context: DistributedContext, at_call: int):
        super().__init__(path)
        self.poisoned = context.rank == context.world_size - 1
        self.at_call, self.calls = at_call, 0

    def __call__(self, model: nn.Module, batch: dict):
        self.calls += 1
        loss, extras = super().__call__(model, batch)
        return (loss * math.nan if self.poisoned and self.calls >= self.at_call else loss), extras


def nan_check(args, context: DistributedContext) -> dict:
    """Every rank must stop at the step where only the last rank's loss became NaN."""
    loss_fn = NaNOnLastRank(make_path(), context, args.nan_check_at)
    try:
        train_run(args, context, f"{args.out}/nan_run", args.steps, False, False, loss_fn)
        stopped = None
    except NonFiniteLossError as error:
        stopped = error.step
    return {"stopped_at_per_rank": context.all_gather_objects([stopped])}


def main(argv=None) -> None:
    torch.set_num_threads(1)
    args = parse_args(argv)
    context = DistributedContext.from_env("cpu")
    VAL_CALLS.clear()
    result = train_run(args, context, args.out, args.steps, args.resume, args.paired_noise)
    val_calls = context.all_gather_objects([list(VAL_CALLS)])
    shard = list(range(32))[context.rank :: context.world_size]
    gathered = sorted(context.all_gather_objects(eval_losses(result.model, make_path(), shard)))
    check = resume_check(args, context) if args.resume_check_at is not None else None
    nan = nan_check(args, context) if args.nan_check_at is not None else None
    if context.is_main:
        Path(args.out, "result.json").write_text(
            json.dumps(
                {
                    "final_loss": result.final_loss,
                    "step": result.step,
                    "history": result.history,
                    "eval": gathered,
                    "world_size": context.world_size,
                    "resume_check": check,
                    "nan_check": nan,
                    "val_calls_per_rank": val_calls,
                    "val_history": result.val_history,
                    "best_step": result.best_step,
                    "stopped_early": result.stopped_early,
                }
            )
        )
        torch.save(result.model.state_dict(), Path(args.out, "params.pt"))
    context.shutdown()


if __name__ == "__main__":
    main()
