"""Validation in the Trainer: best.pt, early stopping, LR schedules, exact resume."""

import math
import signal

import pytest
import torch
from _train_worker import KFlowLoss, SmoothSignals, VelocityMLP, make_path

from kflow.training import (
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    lr_factor,
    read_csv_log,
    seed_everything,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def flat(params):
    return torch.cat([p.detach().flatten() for p in params])


class TableMetric:
    """A validate_fn whose value at each step is read from a table (the trainer's step)."""

    def __init__(self, table, interrupt_at=None):
        self.table, self.interrupt_at = table, interrupt_at
        self.trainer = None
        self.calls = []

    def __call__(self, model):
        step = self.trainer.step
        self.calls.append({"step": step, "training": model.training, "grad": torch.is_grad_enabled(), "model": model})
        self.calls[-1]["params"] = flat(model.parameters()).clone()
        if step == self.interrupt_at:
            signal.raise_signal(signal.SIGTERM)
        return {"v": self.table[step], "other": 2.0 * self.table[step]}


def make_trainer(out_dir, metric=None, steps=20, **overrides):
    seed_everything(0)
    options = dict(steps=steps, batch_size=8, lr=3e-3, ckpt_every=4, log_every=1, out_dir=str(out_dir), progress=False)
    options.update(overrides)
    trainer = Trainer(
        VelocityMLP(hidden=16),
        KFlowLoss(make_path()),
        SmoothSignals(),
        TrainConfig(**options),
        validate_fn=metric,
        val_metric="v" if metric is not None else None,
    )
    if metric is not None:
        metric.trainer = trainer
    return trainer


# ---------------------------------------------------------------- config
def test_validation_options_are_checked():
    with pytest.raises(ConfigError, match="early_stop_patience needs val_every"):
        TrainConfig(early_stop_patience=3)
    with pytest.raises(ConfigError, match="val_every must be >= 1"):
        TrainConfig(val_every=0)
    with pytest.raises(ConfigError, match="unknown lr_schedule 'linear'"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="lr_min_ratio must be <= 1"):
        TrainConfig(lr_min_ratio=1.5)


def test_trainer_needs_a_validate_fn_and_a_metric(tmp_path):
    with pytest.raises(ConfigError, match="val_every=5 but this trainer was given no validate_fn"):
        make_trainer(tmp_path, val_every=5)
    with pytest.raises(ConfigError, match="validate_fn needs val_metric"):
        Trainer(VelocityMLP(), KFlowLoss(make_path()), SmoothSignals(), TrainConfig(), validate_fn=lambda m: {})


# ---------------------------------------------------------------- best checkpoint
def test_best_checkpoint_holds_the_step_with_the_lowest_value(tmp_path):
    table = {2: 5.0, 4: 3.0, 6: 4.0, 8: 1.5, 10: 2.0, 11: 1.7}
    metric = TableMetric(table)
    result = make_trainer(tmp_path, metric, steps=11, val_every=2).fit()
    assert [c["step"] for c in metric.calls] == [2, 4, 6, 8, 10, 11]  # and at the last step
    assert all(not c["training"] and not c["grad"] for c in metric.calls)
    assert result.step == 11 and not result.stopped_early
    assert (result.best_step, result.best_metric) == (8, 1.5)
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["step"] == 8 and best["validation"]["best_step"] == 8
    assert torch.equal(flat(best["model"].values()), metric.calls[3]["params"])
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 11
    assert result.best_checkpoint_path == str(tmp_path / "checkpoints" / "best.pt")
    rows = read_csv_log(tmp_path / "val_log.csv")
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 11]
    assert [r["v"] for r in rows] == [5.0, 3.0, 4.0, 1.5, 2.0, 1.7]
    assert [r["best"] for r in rows] == [5.0, 3.0, 3.0, 1.5, 1.5, 1.5]
    assert set(rows[0]) == {"step", "v", "other", "val_s", "best"}
    assert (tmp_path / "val_curve.png").stat().st_size > 1000
    assert result.val_wall_s == pytest.approx(sum(r["val_s"] for r in rows))


def test_validation_uses_the_ema_weights_and_leaves_training_unchanged(tmp_path):
    metric = TableMetric(dict.fromkeys(range(1, 9), 1.0))
    with_val = make_trainer(tmp_path / "val", metric, steps=8, val_every=3, ema_decay=0.9).fit()
    assert all(c["model"] is with_val.ema_model for c in metric.calls)
    plain = make_trainer(tmp_path / "plain", steps=8, ema_decay=0.9).fit()
    assert torch.equal(flat(with_val.model.parameters()), flat(plain.model.parameters()))
    assert [r["loss"] for r in with_val.history] == [r["loss"] for r in plain.history]
    assert not (tmp_path / "plain" / "val_log.csv").exists()
    assert not (tmp_path / "plain" / "checkpoints" / "best.pt").exists()
    assert plain.best_step is None and plain.val_history == [] and not plain.stopped_early


def test_a_fresh_run_removes_a_stale_best_checkpoint(tmp_path):
    make_trainer(tmp_path, TableMetric({2: 1.0, 3: 2.0}), steps=3, val_every=2).fit()
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    make_trainer(tmp_path, steps=3).fit()
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


# ---------------------------------------------------------------- early stopping
def test_early_stopping_stops_after_patience_validations_without_a_new_best(tmp_path):
    table = {2: 5.0, 4: 4.0, 6: 4.5, 8: 4.0, 10: 3.0, 12: 3.5, 14: 3.2, 16: 3.1, 18: 1.0, 20: 1.0}
    metric = TableMetric(table)
    result = make_trainer(tmp_path, metric, val_every=2, early_stop_patience=3).fit()
    assert [c["step"] for c in metric.calls] == [2, 4, 6, 8, 10, 12, 14, 16]
    assert result.stopped_early and result.step == 16
    assert (result.best_step, result.best_metric) == (10, 3.0)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 16
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["step"] == 10
    again = make_trainer(tmp_path, TableMetric(table), val_every=2, early_stop_patience=3, resume=True).fit()
    assert again.step == 16 and again.stopped_early  # a resumed early-stopped run stays stopped


def test_equal_value_is_not_an_improvement_and_nan_never_is(tmp_path):
    metric = TableMetric({1: 2.0, 2: math.nan, 3: 2.0, 4: 1.0})
    result = make_trainer(tmp_path, metric, steps=4, val_every=1, early_stop_patience=2).fit()
    assert result.stopped_early and result.step == 3 and result.best_step == 1


# ---------------------------------------------------------------- schedules
def test_cosine_schedule_values_are_exact():
    factor = lambda i: lr_factor(i, steps=10, warmup_steps=2, schedule="cosine", min_ratio=0.1)  # noqa: E731
    assert [factor(0), factor(1), factor(2)] == [0.5, 1.0, 1.0]
    assert factor(9) == pytest.approx(0.1, abs=1e-15)
    assert factor(5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 7)), abs=1e-15)
    assert factor(100) == pytest.approx(0.1, abs=1e-15)
    assert lr_factor(0, steps=1, warmup_steps=0, schedule="cosine", min_ratio=0.2) == pytest.approx(0.2)


def test_cosine_schedule_drives_the_optimizer(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, warmup_steps=2, lr=1e-2, lr_schedule="cosine", lr_min_ratio=0.1)
    lrs = [row["lr"] for row in trainer.fit().history]
    expected = [1e-2 * lr_factor(i, steps=10, warmup_steps=2, schedule="cosine", min_ratio=0.1) for i in range(10)]
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs[1] == pytest.approx(1e-2) and lrs[-1] == pytest.approx(1e-3)


def test_constant_schedule_is_the_warmup_then_flat_of_before(tmp_path):
    lrs = [row["lr"] for row in make_trainer(tmp_path, steps=8, warmup_steps=3, lr=1e-2).fit().history]
    assert lrs == [1e-2 * min(1.0, (i + 1) / 3) for i in range(8)]
    assert [lr_factor(i, steps=5, warmup_steps=0) for i in range(5)] == [1.0] * 5


# ---------------------------------------------------------------- resume
def test_resume_keeps_best_patience_and_schedule_position(tmp_path):
    table = {2: 5.0, 4: 3.0, 6: 4.0, 8: 4.0, 10: 2.5, 12: 2.0, 14: 3.0, 16: 3.0, 18: 3.0, 20: 3.0}
    options = dict(val_every=2, early_stop_patience=3, lr_schedule="cosine", warmup_steps=2, ema_decay=0.9)
    whole = make_trainer(tmp_path / "whole", TableMetric(table), **options).fit()
    assert whole.stopped_early and whole.step == 18 and whole.best_step == 12
    with pytest.raises(TrainingInterrupted):
        make_trainer(tmp_path / "split", TableMetric(table, interrupt_at=16), **options).fit()
    state = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert state["step"] == 16 and state["scheduler"]["last_epoch"] == 16
    assert {k: state["validation"][k] for k in ("best_step", "best_value", "bad_validations")} == {
        "best_step": 12,
        "best_value": 2.0,
        "bad_validations": 2,
    }
    resumed = make_trainer(tmp_path / "split", TableMetric(table), resume=True, **options).fit()
    assert resumed.stopped_early and resumed.step == 18  # one more bad validation, not three
    assert (resumed.best_step, resumed.best_metric) == (12, 2.0)
    assert [r["lr"] for r in resumed.history] == [r["lr"] for r in whole.history]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    assert torch.equal(flat(resumed.model.parameters()), flat(whole.model.parameters()))
    drop = lambda rows: [{k: v for k, v in r.items() if k != "val_s"} for r in rows]  # noqa: E731
    assert drop(resumed.val_history) == drop(whole.val_history)
    assert drop(read_csv_log(tmp_path / "split" / "val_log.csv")) == drop(whole.val_history)
    best = [load_checkpoint(tmp_path / run / "checkpoints" / "best.pt") for run in ("whole", "split")]
    assert best[0]["step"] == best[1]["step"] == 12
    assert torch.equal(flat(best[0]["ema"].values()), flat(best[1]["ema"].values()))


# ---------------------------------------------------------------- DDP
@pytest.mark.slow
def test_two_ranks_validate_on_rank_zero_and_stop_together(tmp_path):
    from _subprocess import run_worker

    args = ("--steps", 12, "--batch-size", 8, "--paired-noise", "--val-every", 2, "--early-stop-patience", 2)
    args += ("--val-metric", "rising")  # val_loss + step: the first validation stays the best
    single = run_worker(tmp_path / "single", *args, in_process=True)
    ddp = run_worker(tmp_path / "ddp", *args, nproc=2)
    assert ddp["val_calls_per_rank"] == [[2, 4, 6], []]  # rank 0 validates, rank 1 gets the decision
    assert ddp["step"] == single["step"] == 6 and ddp["stopped_early"] and single["stopped_early"]
    assert [r["val_loss"] for r in ddp["val_history"]] == pytest.approx(
        [r["val_loss"] for r in single["val_history"]], rel=1e-4
    )
    assert ddp["best_step"] == 2 and load_checkpoint(tmp_path / "ddp" / "checkpoints" / "best.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["step"] == 6
    assert [r["step"] for r in read_csv_log(tmp_path / "ddp" / "val_log.csv")] == [2, 4, 6]


def test_resume_warns_when_the_cosine_plan_or_the_metric_changes(tmp_path):
    make_trainer(tmp_path, TableMetric({2: 1.0, 4: 1.0}), steps=4, val_every=2, lr_schedule="cosine").fit()
    with pytest.warns(UserWarning, match="planned steps=4, this run plans 6"):
        make_trainer(tmp_path, TableMetric({6: 1.0}), steps=6, val_every=2, lr_schedule="cosine", resume=True).fit()
    metric = TableMetric({8: 1.0})
    trainer = make_trainer(tmp_path, metric, steps=8, val_every=2, resume=True)
    trainer.validation.metric = "other"
    with pytest.warns(UserWarning, match="kept the best 'v', this run minimises 'other'"):
        result = trainer.fit()
    assert result.val_history[0]["step"] == 8 and result.best_step == 8
