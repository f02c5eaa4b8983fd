"""DiT shapes, adaLN-Zero init, classifier-free guidance, label dropout; MoE routing and balance loss."""

import pytest
import torch

from kflow_image.models import DIT_PRESETS, DiT, MoEMLP, TopKRouter
from kflow_image.models.dit import sincos_pos_embed_2d


def tiny(**kwargs) -> DiT:
    args = dict(image_size=8, channels=1, patch=2, hidden=32, depth=2, heads=2, num_classes=10)
    return DiT(**{**args, **kwargs})


def randomize_zero_init(model: DiT) -> DiT:
    """adaLN-Zero makes a fresh DiT output exactly 0; perturb so outputs depend on inputs."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_presets_cover_sizes_and_patches():
    assert {"DiT-T/2", "DiT-S/2", "DiT-B/2", "DiT-L/2", "DiT-S/4", "DiT-B/4", "DiT-L/4"} <= set(DIT_PRESETS)
    assert DIT_PRESETS["DiT-S/2"] == dict(depth=12, hidden=384, heads=6, patch=2)
    assert DIT_PRESETS["DiT-L/4"]["patch"] == 4
    with pytest.raises(ValueError, match="unknown preset"):
        DiT.from_preset("DiT-XXL/2")


@pytest.mark.parametrize("shape,patch", [((1, 8, 8), 2), ((3, 16, 12), 4)])
def test_forward_shape_and_zero_init(shape, patch):
    c, h, w = shape
    model = tiny(image_size=(h, w), channels=c, patch=patch)
    x = torch.randn(3, c, h, w)
    out = model(x, torch.rand(3), torch.tensor([0, 3, 9]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # adaLN-Zero + zero final layer: the initial velocity is 0


def test_bad_input_shapes_raise():
    with pytest.raises(ValueError, match="not divisible by patch"):
        tiny(image_size=10, patch=4)
    with pytest.raises(ValueError, match="expected x of shape"):
        tiny()(torch.randn(2, 1, 6, 6), torch.rand(2), None)


def test_sincos_positions_are_distinct_and_bounded():
    pos = torch.from_numpy(sincos_pos_embed_2d(32, 4, 4))
    assert pos.shape == (16, 32)
    assert pos.abs().max() <= 1.0
    assert torch.cdist(pos, pos).fill_diagonal_(1.0).min() > 1e-3


def test_cfg_matches_formula():
    model = randomize_zero_init(tiny()).eval()
    x, s, y = torch.randn(4, 1, 8, 8), torch.rand(4), torch.tensor([1, 2, 3, 4])
    v_cond, v_null = model(x, s, y), model(x, s, None)
    assert not torch.allclose(v_cond, v_null)
    torch.testing.assert_close(model.forward_with_cfg(x, s, y, 1.0), v_cond)
    torch.testing.assert_close(model.forward_with_cfg(x, s, y, 0.0), v_null, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        model.forward_with_cfg(x, s, y, 3.0), v_null + 3.0 * (v_cond - v_null), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(model.forward_with_cfg(x, s, None, 3.0), v_null)


def test_label_dropout_only_in_training():
    model = randomize_zero_init(tiny(class_dropout_prob=1.0))
    x, s, y = torch.randn(3, 1, 8, 8), torch.rand(3), torch.tensor([1, 2, 3])
    model.eval()
    v_null = model(x, s, None)
    assert not torch.allclose(model(x, s, y), v_null)
    model.train()
    torch.testing.assert_close(model(x, s, y), v_null)  # p = 1: every label becomes the null label

    half = tiny(class_dropout_prob=0.3).y_embedder
    torch.manual_seed(0)
    dropped = half.drop_labels(torch.zeros(20000, dtype=torch.long))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert abs((dropped == 10).double().mean().item() - 0.3) < 0.02


def test_unconditional_model_ignores_labels():
    model = randomize_zero_init(tiny(num_classes=0)).eval()
    x, s = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert model.y_embedder is None
    torch.testing.assert_close(model(x, s, None), model(x, s, torch.tensor([1, 2])))


def test_moe_routing_weights_sum_to_one_and_balance_loss():
    torch.manual_seed(0)
    router = TopKRouter(hidden=16, num_experts=4, top_k=2)
    info = router(torch.randn(50, 16))
    torch.testing.assert_close(info.weights.sum(-1), torch.ones(50))
    torch.testing.assert_close(info.probs.sum(-1), torch.ones(50))
    assert info.experts.shape == (50, 2) and (info.experts[:, 0] != info.experts[:, 1]).all()
    routed = torch.zeros(50, 4).scatter_(1, info.experts, 1.0).mean(0) / 2
    expected = 4 * (routed * info.probs.mean(0)).sum()
    assert torch.isfinite(info.balance_loss)
    torch.testing.assert_close(info.balance_loss, expected)
    torch.nn.init.zeros_(router.gate.weight)  # uniform router: E * sum_e f_e * (1/E) = sum_e f_e = 1
    assert router(torch.randn(50, 16)).balance_loss.item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="top_k"):
        TopKRouter(16, 4, 5)


def test_moe_output_is_weighted_mixture_of_chosen_experts():
    torch.manual_seed(0)
    moe = MoEMLP(hidden=8, mlp_hidden=16, num_experts=3, top_k=2)
    x = torch.randn(2, 5, 8)
    out = moe(x)
    tokens = x.reshape(-1, 8)
    info = moe.router(tokens)
    expected = torch.stack(
        [
            sum(info.weights[t, j] * moe.experts[int(info.experts[t, j])](tokens[t]) for j in range(2))
            for t in range(len(tokens))
        ]
    )
    torch.testing.assert_close(out.reshape(-1, 8), expected, atol=1e-6, rtol=1e-5)


def test_moe_dit_exposes_balance_loss_with_gradient():
    model = tiny(mlp="moe", num_experts=4, top_k=2)
    dense = tiny()
    out = model(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1]))
    loss = model.balance_loss
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(loss) and loss.requires_grad
    assert 0 < loss.item() < 2 * 4  # two layers, each in (0, num_experts]
    loss.backward()
    assert model.blocks[0].mlp.router.gate.weight.grad is not None
    assert dense.balance_loss.item() == 0.0
