"""EMA warm-up: decay min(decay, (1 + t) / (10 + t)), so short runs do not sample from initial weights."""

import pytest
import torch
from torch import nn

from kflow.training import TrainConfig, Trainer
from kflow.training.ema import EMA


def test_warmup_decay_schedule_and_update():
    model = nn.Linear(3, 2)
    ema = EMA(model, 0.999, warmup=True)
    assert ema.decay_at(1) == pytest.approx(2 / 11) and ema.decay_at(100) == pytest.approx(101 / 110)
    assert ema.decay_at(10**6) == 0.999 and EMA(model, 0.999).decay_at(1) == 0.999
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=1)
    for shadow, old, new in zip(ema.module.parameters(), start, model.parameters()):
        torch.testing.assert_close(shadow, 2 / 11 * old + 9 / 11 * new)


def test_trainer_ema_warmup_tracks_the_trained_weights(tmp_path):
    data = torch.utils.data.TensorDataset(torch.randn(64, 3), torch.randn(64, 1))

    def loss_fn(model, batch):
        x, y = batch
        return (model(x) - y).pow(2).mean()

    distances = {}
    for warmup in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        cfg = TrainConfig(
            steps=40,
            batch_size=16,
            lr=0.05,
            ema_decay=0.999,
            ema_warmup=warmup,
            out_dir=str(tmp_path / str(warmup)),
            progress=False,
            ckpt_every=1000,
        )
        result = Trainer(model, loss_fn, data, cfg).fit()
        ema = torch.cat([p.flatten() for p in result.ema_model.parameters()])
        final = torch.cat([p.detach().flatten() for p in result.model.parameters()])
        distances[warmup] = ((ema - final).norm() / (initial - final).norm()).item()
    assert distances[False] > 0.9  # 40 steps at 0.999: the EMA is still ~96% initial weights
    assert distances[True] < 0.5
