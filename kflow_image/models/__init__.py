"""Velocity networks for images: DiT (dense or mixture-of-experts MLP)."""

from kflow_image.models.dit import DIT_PRESETS, DiT
from kflow_image.models.moe import MoEMLP, RoutingInfo, TopKRouter

__all__ = ["DIT_PRESETS", "DiT", "MoEMLP", "RoutingInfo", "TopKRouter"]
