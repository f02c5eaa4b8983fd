"""StepDraws: per-sample draws independent of the DDP split and of the RNG state."""

import torch

from kflow.training import StepDraws
from kflow.training.trainer import EpochBatches, _accepts_keyword


def test_ranks_together_draw_what_one_process_draws():
    single = StepDraws(seed=3, step=7)
    ranks = [StepDraws(seed=3, step=7, rank=r, world_size=2) for r in range(2)]
    for method in ("rand", "randn"):
        whole = getattr(single, method)(6, 2)
        parts = [getattr(d, method)(3, 2) for d in ranks]
        torch.testing.assert_close(parts[0], whole[0::2], atol=0, rtol=0)
        torch.testing.assert_close(parts[1], whole[1::2], atol=0, rtol=0)


def test_rank_rows_are_the_samples_the_rank_holds():
    one = EpochBatches(16, 8, world_size=1, rank=0, seed=0)(epoch=0)[1]
    two = [EpochBatches(16, 8, world_size=2, rank=r, seed=0)(epoch=0)[1] for r in range(2)]
    assert two[0] == one[0::2] and two[1] == one[1::2]


def test_draws_depend_on_step_and_call_not_on_global_rng():
    torch.manual_seed(0)
    a = StepDraws(seed=0, step=1).rand(4)
    torch.manual_seed(123)
    b = StepDraws(seed=0, step=1).rand(4)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    draws = StepDraws(seed=0, step=1)
    assert not torch.equal(draws.rand(4), draws.rand(4))
    assert not torch.equal(StepDraws(seed=0, step=2).rand(4), a)


def test_keyword_detection():
    assert _accepts_keyword(lambda model, batch, draws=None: 0, "draws")
    assert not _accepts_keyword(lambda model, batch: 0, "draws")
    assert not _accepts_keyword(lambda model, batch, **kw: 0, "draws")
