"""Trainer, TrainConfig, checkpoints and helpers, in-process on CPU."""

import math
import os
import random

import numpy as np
import pytest
import torch
from _train_worker import KFlowLoss, SmoothSignals, VelocityMLP, make_path
from torch import nn

from kflow.training import (
    EMA,
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    CSVLogger,
    DistributedContext,
    EpochBatches,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    capture_rng_state,
    check_choice,
    check_dir,
    check_range,
    exit_on_training_error,
    load_checkpoint,
    move_to_device,
    plot_loss_curve,
    read_csv_log,
    resolve_device,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def train(out_dir, steps=20, model=None, loss_fn=None, signature=None, dataset=None, **overrides):
    seed_everything(0)
    model = model or VelocityMLP(hidden=32)
    options = dict(steps=steps, batch_size=8, lr=3e-3, ckpt_every=10, log_every=5, out_dir=str(out_dir), progress=False)
    options.update(overrides)
    trainer = Trainer(
        model,
        loss_fn or KFlowLoss(make_path()),
        dataset or SmoothSignals(),
        TrainConfig(**options),
        signature=signature or {"problem": "smooth-signals-16"},
    )
    return trainer.fit()


def flat_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    "bad, key",
    [
        ({"steps": -1}, "steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"amp": "fp8"}, "amp"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"log_every": 0}, "log_every"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"device": "tpu"}, "device"),
        ({"resume": "yes"}, "resume"),
    ],
)
def test_train_config_rejects_bad_values_naming_the_key(bad, key):
    with pytest.raises(ConfigError, match=key) as info:
        TrainConfig.from_dict(bad)
    assert "\n" not in str(info.value)


def test_train_config_from_dict_rejects_unknown_keys_and_accepts_ints_for_floats():
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    cfg = TrainConfig.from_dict({"lr": 1, "grad_clip": None, "steps": 0})
    assert cfg.lr == 1 and cfg.grad_clip is None and cfg.steps == 0


def test_trainer_rejects_impossible_setups_before_work(tmp_path):
    small = torch.utils.data.Subset(SmoothSignals(), range(4))
    with pytest.raises(ConfigError, match="fewer than batch_size=8"):
        Trainer(VelocityMLP(), KFlowLoss(make_path()), small, TrainConfig(batch_size=8, out_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="not divisible by the 3 ranks"):
        Trainer(
            VelocityMLP(),
            KFlowLoss(make_path()),
            SmoothSignals(),
            TrainConfig(batch_size=8, out_dir=str(tmp_path)),
            dist_context=DistributedContext(rank=0, world_size=3),
        )
    assert not any(tmp_path.iterdir())


def test_validators_name_the_key(tmp_path):
    check_range("K", 1, minimum=1)
    with pytest.raises(ConfigError, match="^K must be >= 1, got 0$"):
        check_range("K", 0, minimum=1)
    with pytest.raises(ConfigError, match="unknown transform 'fft'; choose one of"):
        check_choice("transform", "fft", ["fourier", "wavelet"])
    with pytest.raises(ConfigError, match="data folder .*nope.* does not exist"):
        check_dir("data.root", tmp_path / "nope")
    with pytest.raises(ConfigError, match="has no 'index.csv'"):
        check_dir("data.root", tmp_path, must_contain="index.csv")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_resolve_device_refuses_missing_cuda():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")


# ---------------------------------------------------------------- training
def test_trainer_learns_and_writes_log_curve_and_checkpoint(tmp_path):
    seed_everything(0)
    model = VelocityMLP(hidden=32)
    loss_fn = KFlowLoss(make_path())
    data = SmoothSignals(paired_noise=True)
    whole = {key: torch.stack([data[i][key] for i in range(len(data))]) for key in data[0]}
    with torch.no_grad():
        loss_before = loss_fn(model, whole)[0].item()
    result = train(tmp_path, steps=60, model=model, loss_fn=loss_fn, dataset=data, lr=1e-2)
    with torch.no_grad():
        loss_after = loss_fn(model, whole)[0].item()
    assert loss_after < 0.6 * loss_before
    assert result.step == 60 and [r["step"] for r in result.history] == list(range(5, 61, 5))
    rows = read_csv_log(tmp_path / "train_log.csv")
    assert [r["step"] for r in rows] == [r["step"] for r in result.history]
    assert set(rows[0]) == {"step", "loss", "lr", "grad_norm", "wall_s", "mean_k"}
    assert rows[-1]["loss"] == pytest.approx(result.final_loss)
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["step"] == 60 and state["config"]["steps"] == 60
    assert state["signature"]["model"] == "VelocityMLP"
    torch.testing.assert_close(state["model"]["net.0.weight"], result.model.net[0].weight)


def test_resume_continues_exactly(tmp_path):
    whole = train(tmp_path / "whole", steps=20, ema_decay=0.9, warmup_steps=4)
    train(tmp_path / "split", steps=10, ema_decay=0.9, warmup_steps=4)
    resumed = train(tmp_path / "split", steps=20, ema_decay=0.9, warmup_steps=4, resume=True)
    assert resumed.step == 20
    assert resumed.final_loss == whole.final_loss
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    assert torch.equal(flat_params(resumed.model), flat_params(whole.model))
    assert torch.equal(flat_params(resumed.ema_model), flat_params(whole.ema_model))
    assert [r["step"] for r in read_csv_log(tmp_path / "split" / "train_log.csv")] == [5, 10, 15, 20]


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    result = train(tmp_path, steps=5, resume=True)
    assert result.step == 5


def test_resume_refuses_checkpoint_of_another_model(tmp_path):
    train(tmp_path, steps=5)
    with pytest.raises(CheckpointMismatchError, match=r"num_parameters=\d+ .*expects num_parameters="):
        train(tmp_path, steps=10, resume=True, model=VelocityMLP(hidden=16))
    with pytest.raises(CheckpointMismatchError, match="problem='smooth-signals-16'.*problem='other'"):
        train(tmp_path, steps=10, resume=True, signature={"problem": "other"})
    with pytest.raises(CheckpointMismatchError, match="global_batch=8 but this run expects global_batch=16"):
        train(tmp_path, steps=10, resume=True, batch_size=16)
    with pytest.raises(CheckpointMismatchError, match="dataset_size=64 but .* dataset_size=48"):
        train(tmp_path, steps=10, resume=True, dataset=torch.utils.data.Subset(SmoothSignals(), range(48)))


def test_bf16_autocast_runs_the_forward_in_bfloat16(tmp_path):
    seen = set()
    model = VelocityMLP(hidden=32)
    model.net[0].register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    result = train(tmp_path, steps=4, model=model, amp="bf16", log_every=1)
    assert seen == {torch.bfloat16}
    assert all(math.isfinite(r["loss"]) for r in result.history)
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_compile_option_trains_through_torch_compile(tmp_path):
    result = train(tmp_path, steps=3, compile=True, compile_backend="aot_eager", log_every=1)
    assert result.step == 3 and all(math.isfinite(r["loss"]) for r in result.history)
    assert "net.0.weight" in load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]


class NaNAfter:
    """Wraps a loss and returns NaN from call `at_call` on (fault injection)."""

    def __init__(self, loss_fn, at_call):
        self.loss_fn, self.at_call, self.calls = loss_fn, at_call, 0

    def __call__(self, model, batch):
        self.calls += 1
        loss, extras = self.loss_fn(model, batch)
        return (loss * math.nan if self.calls >= self.at_call else loss), extras


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="loss became nan at step 13") as info:
        train(tmp_path, steps=30, ckpt_every=5, loss_fn=NaNAfter(KFlowLoss(make_path()), 13))
    assert info.value.step == 13
    state = load_checkpoint(info.value.checkpoint_path)
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert [r["step"] for r in read_csv_log(tmp_path / "train_log.csv")] == [5, 10]


def test_non_finite_loss_before_any_checkpoint_writes_the_good_state(tmp_path):
    with pytest.raises(NonFiniteLossError, match="step 3"):
        train(tmp_path, steps=30, ckpt_every=100, loss_fn=NaNAfter(KFlowLoss(make_path()), 3))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


# ---------------------------------------------------------------- checkpoints
def test_save_checkpoint_is_atomic_and_leaves_previous_file_on_failure(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"format_version": 1, "x": torch.arange(3)})
    with pytest.raises(AttributeError, match="Can.t pickle local object"):
        save_checkpoint(path, {"format_version": 1, "bad": lambda: 0})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(3))
    assert os.listdir(path.parent) == ["last.pt"]


def test_load_checkpoint_is_weights_only_and_checks_signature_and_version(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"format_version": 1, "evil": EMA}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    save_checkpoint(path, {"format_version": 99})
    with pytest.raises(CheckpointMismatchError, match="format_version=99"):
        load_checkpoint(path)
    save_checkpoint(path, {"format_version": 1, "signature": {"model": "A", "preset": "S"}})
    with pytest.raises(CheckpointMismatchError, match=r"written for model='A' but this run expects model='B'"):
        load_checkpoint(path, expected_signature={"model": "B", "preset": "S"})
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(3)
    save_checkpoint(tmp_path / "r.pt", {"format_version": 1, "rng": capture_rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(2), np.random.randn())
    random.random(), np.random.rand(), torch.rand(5)
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(2), np.random.randn())
    assert got[0] == expected[0] and got[1] == expected[1] and got[3] == expected[3]
    assert torch.equal(got[2], expected[2])


# ---------------------------------------------------------------- data order and helpers
@pytest.mark.parametrize("world_size", [2, 4])
def test_rank_shards_form_the_single_process_global_batch(world_size):
    single = EpochBatches(50, 8, 1, 0, seed=5)
    shards = [EpochBatches(50, 8, world_size, r, seed=5) for r in range(world_size)]
    assert all(s.steps_per_epoch == single.steps_per_epoch == 6 for s in shards)
    for epoch in range(2):
        global_batches = single(epoch)
        per_rank = [s(epoch) for s in shards]
        for step, batch in enumerate(global_batches):
            assert sorted(i for rank in per_rank for i in rank[step]) == sorted(batch)
    assert single(0) != single(1)


def test_ema_follows_the_exponential_average():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.75)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, start + 0.25)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_move_to_device_handles_nested_batches_and_pyg_data():
    from torch_geometric.data import Batch, Data

    graph = Batch.from_data_list([Data(x=torch.ones(2, 3)), Data(x=torch.zeros(1, 3))])
    batch = {"a": torch.ones(1), "b": [torch.zeros(1), (graph, 3)], "c": "text"}
    moved = move_to_device(batch, "cpu")
    assert moved["c"] == "text" and moved["b"][1][1] == 3
    assert torch.equal(moved["b"][1][0].x, graph.x) and isinstance(moved["b"][1][0], Batch)


def test_csv_logger_widens_header_and_plot_writes_png(tmp_path):
    logger = CSVLogger(tmp_path / "log.csv")
    logger.log({"step": 1, "loss": 2.0})
    logger.log({"step": 2, "loss": 1.0, "extra": 5.0})
    assert read_csv_log(tmp_path / "log.csv") == [{"step": 1.0, "loss": 2.0}, {"step": 2.0, "loss": 1.0, "extra": 5.0}]
    png = plot_loss_curve(tmp_path / "log.csv", tmp_path / "curve.png", keys=("loss", "extra"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_process_context_gathers_locally():
    context = DistributedContext.from_env("cpu")
    assert context.is_main and not context.is_distributed
    assert context.all_gather_objects([1, 2]) == [1, 2]
    torch.testing.assert_close(context.all_reduce_mean(torch.tensor([2.0])), torch.tensor([2.0]))


@pytest.mark.parametrize(
    "error, code",
    [
        (ConfigError("K must be >= 1, got 0"), 2),
        (CheckpointMismatchError("checkpoint c.pt was written for model='A'"), 2),
        (NonFiniteLossError("loss became nan at step 3", step=3), 3),
        (TrainingInterrupted("training stopped by SIGTERM at step 4", step=4), 143),
        (TrainingInterrupted("training stopped by SIGINT at step 4", step=4, signal_name="SIGINT"), 130),
    ],
)
def test_exit_on_training_error_prints_one_line_and_exits(error, code, capsys):
    with pytest.raises(SystemExit) as info:
        with exit_on_training_error("train_x"):
            raise error
    assert info.value.code == code
    assert capsys.readouterr().err == f"train_x: error: {error}\n"


def test_resume_with_another_rank_count_warns_and_reseeds(tmp_path):
    train(tmp_path, steps=5)
    path = tmp_path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["rng"] = state["rng"] * 2  # as if written by 2 ranks
    save_checkpoint(path, state)
    with pytest.warns(UserWarning, match="written by 2 rank"):
        result = train(tmp_path, steps=8, resume=True)
    assert result.step == 8 and [r["step"] for r in result.history] == [5, 8]
