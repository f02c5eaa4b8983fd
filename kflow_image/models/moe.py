"""Mixture-of-experts MLP with top-k routing and a load-balancing loss.

A drop-in replacement for the transformer MLP: every token is routed to ``top_k`` of
``num_experts`` small MLPs and their outputs are mixed with the renormalised router
probabilities. The auxiliary loss is the Switch-Transformer balance term
``num_experts * sum_e f_e * P_e`` (``f_e`` fraction of routing slots sent to expert ``e``,
``P_e`` its mean router probability); it equals 1 for a perfectly uniform router.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RoutingInfo:
    """What the router decided for a batch of tokens.

    Attributes:
        weights: mixing weight of each chosen expert, shape ``(T, top_k)``, rows sum to 1.
        experts: index of each chosen expert, shape ``(T, top_k)``.
        probs: full router softmax, shape ``(T, num_experts)``.
        balance_loss: scalar load-balancing loss.
    """

    weights: torch.Tensor
    experts: torch.Tensor
    probs: torch.Tensor
    balance_loss: torch.Tensor


class TopKRouter(nn.Module):
    """Linear router choosing ``top_k`` experts per token.

    Args:
        hidden: token width.
        num_experts: number of experts.
        top_k: experts per token (``1 <= top_k <= num_experts``).
    """

    def __init__(self, hidden: int, num_experts: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"moe: top_k={top_k} must be in 1..num_experts={num_experts}")
        self.gate = nn.Linear(hidden, num_experts, bias=False)
        self.num_experts = num_experts
        self.top_k = top_k

    def forward(self, tokens: torch.Tensor) -> RoutingInfo:
        """Route tokens.

        Args:
            tokens: shape ``(T, hidden)``.

        Returns:
            :class:`RoutingInfo` for the ``T`` tokens.
        """
        probs = self.gate(tokens).float().softmax(dim=-1)
        top_probs, experts = probs.topk(self.top_k, dim=-1)
        weights = top_probs / top_probs.sum(dim=-1, keepdim=True)
        slots = torch.zeros_like(probs).scatter_(1, experts, 1.0)
        fraction_routed = slots.mean(dim=0) / self.top_k
        balance_loss = self.num_experts * (fraction_routed * probs.mean(dim=0)).sum()
        return RoutingInfo(weights.to(tokens.dtype), experts, probs, balance_loss)


class MoEMLP(nn.Module):
    """Top-k mixture of GELU MLP experts.

    Args:
        hidden: token width.
        mlp_hidden: hidden width of every expert.
        num_experts: number of experts.
        top_k: experts used per token.

    After each forward, ``self.balance_loss`` holds the scalar balance loss of that call.
    """

    def __init__(self, hidden: int, mlp_hidden: int, num_experts: int = 4, top_k: int = 2):
        super().__init__()
        self.router = TopKRouter(hidden, num_experts, top_k)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(approximate="tanh"), nn.Linear(mlp_hidden, hidden))
            for _ in range(num_experts)
        )
        self.balance_loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the mixture.

        Args:
            x: tokens, shape ``(B, N, hidden)``.

        Returns:
            Shape ``(B, N, hidden)``.
        """
        tokens = x.reshape(-1, x.shape[-1])
        routing = self.router(tokens)
        self.balance_loss = routing.balance_loss
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token_idx, slot = (routing.experts == e).nonzero(as_tuple=True)
            if token_idx.numel() == 0:
                continue
            w = routing.weights[token_idx, slot].unsqueeze(-1)
            out.index_add_(0, token_idx, w * expert(tokens[token_idx]))
        return out.reshape_as(x)
