"""Diffusion Transformer (DiT) velocity network for K-Flow, after Peebles & Xie (2023).

The network sees an image ``x`` on the K-amplitude path, the normalised scale ``s = k / K``
(in place of diffusion time) and an optional class label, and predicts the velocity
``dx/dk``. Pieces, in the order the forward pass uses them: patchify + fixed 2-D sin-cos
positions, an MLP embedding of ``s``, a label table with one extra "null" row (label dropout
for classifier-free guidance), ``depth`` transformer blocks modulated by adaLN-Zero, and a
final adaLN layer that un-patchifies back to ``(B, C, H, W)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kflow_image.models.moe import MoEMLP

# depth / width / heads follow the DiT paper; "T" (tiny) is for CPU-scale data (8x8, 28x28).
_SIZES = {
    "T": dict(depth=4, hidden=128, heads=4),
    "S": dict(depth=12, hidden=384, heads=6),
    "B": dict(depth=12, hidden=768, heads=12),
    "L": dict(depth=24, hidden=1024, heads=16),
}
DIT_PRESETS: dict[str, dict] = {
    f"DiT-{size}/{patch}": dict(**arch, patch=patch) for size, arch in _SIZES.items() for patch in (2, 4)
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: ``x * (1 + scale) + shift``; x ``(B, N, D)``, shift/scale ``(B, D)``."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class ScaleEmbedder(nn.Module):
    """Embed the scalar ``s = k / K`` in [0, 1] with sinusoids and an MLP.

    ``s`` is multiplied by 1000 before the sinusoids so the frequencies match the usual
    diffusion-timestep embedding.
    """

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Args: s: shape ``(B,)``. Returns: shape ``(B, hidden)``."""
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=s.device, dtype=torch.float32) / half)
        angles = 1000.0 * s.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class-label table with a null label (index ``num_classes``) for guidance.

    During training each label is replaced by the null label with probability
    ``dropout_prob``; ``y=None`` means "no condition" and uses the null label for all.
    """

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float):
        super().__init__()
        self.table = nn.Embedding(num_classes + 1, hidden)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def drop_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Replace labels by the null label with probability ``dropout_prob``; y ``(B,)`` long."""
        drop = torch.rand(y.shape, device=y.device) < self.dropout_prob
        return torch.where(drop, torch.full_like(y, self.num_classes), y)

    def forward(self, y: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        """Args: y: labels ``(B,)`` long or ``None``. Returns: shape ``(B, hidden)``."""
        if y is None:
            y = torch.full((batch_size,), self.num_classes, dtype=torch.long, device=device)
        elif self.training and self.dropout_prob > 0:
            y = self.drop_labels(y)
        return self.table(y)


class Mlp(nn.Module):
    """Transformer MLP: Linear, tanh-GELU, Linear."""

    def __init__(self, hidden: int, mlp_hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: ``(B, N, hidden)``. Returns: ``(B, N, hidden)``."""
        return self.net(x)


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated by the conditioning (adaLN-Zero)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float, mlp: str, num_experts: int, top_k: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden * mlp_ratio)
        self.mlp = MoEMLP(hidden, mlp_hidden, num_experts, top_k) if mlp == "moe" else Mlp(hidden, mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Args: x: tokens ``(B, N, hidden)``; c: conditioning ``(B, hidden)``. Returns ``(B, N, hidden)``."""
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift_a, scale_a)
        x = x + gate_a.unsqueeze(1) * self.attn(h, h, h, need_weights=False)[0]
        return x + gate_m.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    """adaLN-modulated norm and a linear map from tokens to patches."""

    def __init__(self, hidden: int, patch: int, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch * patch * channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, N, hidden)``, c ``(B, hidden)``. Returns ``(B, N, patch*patch*C)``."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def sincos_pos_embed_2d(hidden: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Fixed 2-D sin-cos position table, shape ``(grid_h * grid_w, hidden)``; row-major tokens."""
    if hidden % 4:
        raise ValueError(f"dit: hidden={hidden} must be divisible by 4 for 2-D sin-cos positions")

    def axis(positions: np.ndarray, dim: int) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        angles = positions.reshape(-1)[:, None] * omega[None]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64), indexing="ij")
    return np.concatenate([axis(rows, hidden // 2), axis(cols, hidden // 2)], axis=1)


class DiT(nn.Module):
    """DiT velocity network ``v(x, s, y)``.

    Args:
        image_size: ``(H, W)`` (or an int for square images); both divisible by ``patch``.
        channels: image channels ``C``.
        patch: patch side length.
        hidden: token width.
        depth: number of blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width / ``hidden``.
        num_classes: number of labels; 0 for an unconditional model.
        class_dropout_prob: label-dropout probability during training (for CFG).
        mlp: ``"dense"`` or ``"moe"``.
        num_experts: experts per MoE layer.
        top_k: experts used per token.
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 8,
        channels: int = 1,
        patch: int = 2,
        hidden: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 10,
        class_dropout_prob: float = 0.1,
        mlp: str = "dense",
        num_experts: int = 4,
        top_k: int = 2,
    ):
        super().__init__()
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height % patch or width % patch:
            raise ValueError(f"dit: image size {height}x{width} is not divisible by patch={patch}")
        if mlp not in ("dense", "moe"):
            raise ValueError(f"dit: mlp must be 'dense' or 'moe', got {mlp!r}")
        self.channels, self.patch, self.height, self.width = channels, patch, height, width
        self.grid = (height // patch, width // patch)
        self.num_classes = num_classes
        self.patch_embed = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch)
        pos = torch.from_numpy(sincos_pos_embed_2d(hidden, *self.grid)).float().unsqueeze(0)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.s_embedder = ScaleEmbedder(hidden)
        self.y_embedder = LabelEmbedder(num_classes, hidden, class_dropout_prob) if num_classes > 0 else None
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads, mlp_ratio, mlp, num_experts, top_k) for _ in range(depth))
        self.final_layer = FinalLayer(hidden, patch, channels)
        self._init_weights()

    @classmethod
    def from_preset(cls, name: str, **kwargs) -> DiT:
        """Build from :data:`DIT_PRESETS` (e.g. ``"DiT-T/2"``); ``kwargs`` override or add args."""
        if name not in DIT_PRESETS:
            raise ValueError(f"dit: unknown preset {name!r}; choose from {sorted(DIT_PRESETS)}")
        return cls(**{**DIT_PRESETS[name], **kwargs})

    def _init_weights(self) -> None:
        def xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(xavier)
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.s_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.s_embedder.mlp[2].weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.table.weight, std=0.02)
        for block in self.blocks:  # adaLN-Zero: every residual branch starts as the identity
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, p*p*C)`` to images ``(B, C, H, W)``."""
        p, (gh, gw) = self.patch, self.grid
        x = tokens.reshape(tokens.shape[0], gh, gw, p, p, self.channels)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(tokens.shape[0], self.channels, gh * p, gw * p)

    @property
    def balance_loss(self) -> torch.Tensor:
        """Sum of MoE load-balancing losses from the last forward (0 for a dense model)."""
        losses = [b.mlp.balance_loss for b in self.blocks if isinstance(b.mlp, MoEMLP)]
        return torch.stack(losses).sum() if losses else torch.zeros((), device=self.pos_embed.device)

    def forward(self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the velocity.

        Args:
            x: images on the path, shape ``(B, C, H, W)``.
            s: normalised scale ``k / K`` in [0, 1], shape ``(B,)`` (a float broadcasts).
            y: class labels ``(B,)`` long, or ``None`` for the unconditional velocity.

        Returns:
            Velocity, shape ``(B, C, H, W)``.
        """
        if x.shape[1:] != (self.channels, self.height, self.width):
            raise ValueError(
                f"dit: expected x of shape (B, {self.channels}, {self.height}, {self.width}), got {tuple(x.shape)}"
            )
        batch = x.shape[0]
        s = torch.as_tensor(s, device=x.device, dtype=x.dtype).expand(batch)
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed.to(x.dtype)
        c = self.s_embedder(s)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y, batch, x.device)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c))

    def forward_with_cfg(
        self, x: torch.Tensor, s: torch.Tensor, y: torch.Tensor | None, cfg_scale: float
    ) -> torch.Tensor:
        """Classifier-free guided velocity ``v_null + cfg_scale * (v_y - v_null)``.

        Args:
            x: shape ``(B, C, H, W)``.
            s: shape ``(B,)``.
            y: labels ``(B,)``; ``None`` returns the unconditional velocity.
            cfg_scale: guidance scale; 1 gives the plain conditional velocity.

        Returns:
            Shape ``(B, C, H, W)``.
        """
        if y is None or cfg_scale == 1.0:
            return self(x, s, y)
        batch = x.shape[0]
        s = torch.as_tensor(s, device=x.device, dtype=x.dtype).expand(batch)
        null = torch.full_like(y, self.num_classes)
        v = self(torch.cat([x, x]), torch.cat([s, s]), torch.cat([y, null]))
        v_cond, v_null = v[:batch], v[batch:]
        return v_null + cfg_scale * (v_cond - v_null)
