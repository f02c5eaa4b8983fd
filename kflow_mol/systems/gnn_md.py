"""GNN-MD: one network pass from the start state to the crystal (deterministic regression).

The rigid head reads the start cluster (``s = 0`` always) and outputs per molecule a
translation ``tau`` (in units of ``translation_scale``) and a rotation vector ``omega``; the
prediction moves every start molecule rigidly about its centroid:

    pos_a = exp(omega_m) (pos_start_a - c_m) + c_m + sigma tau_m.

Loss on the final pose: the mean squared atom-position error in units of ``sigma``,
``|pos_pred - pos_target|^2 / (3 sigma^2)`` averaged over atoms. No flow, no sampling steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from kflow.training import StepDraws
from kflow_mol.rigid import apply_rigid_motion
from kflow_mol.systems.base import AssemblySample, AssemblySystem, ClusterLayout, cluster_layout, positive_scale
from kflow_mol.systems.common import call_network


class GNNMD(AssemblySystem):
    """Direct regression of the crystal pose with the rigid head.

    Args:
        translation_scale: ``sigma`` (Å) of the predicted translations.
    """

    head = "rigid"
    stochastic = False
    default_steps = 1

    def __init__(self, translation_scale: float = 1.0):
        self.translation_scale = positive_scale(translation_scale)

    def predict(self, model: nn.Module, batch: Any, layout: ClusterLayout | None = None) -> Tensor:
        """Predicted atom positions ``(A, 3)`` from one network pass on the start state."""
        layout = layout or cluster_layout(batch)
        s = torch.zeros(layout.num_clusters, dtype=batch.pos_start.dtype, device=batch.pos_start.device)
        out = call_network(model, batch, layout, batch.pos_start, s)
        if out.translation is None:
            raise ValueError("gnn_md needs the rigid head: build_model(head='rigid')")
        return apply_rigid_motion(
            batch.pos_start,
            batch.mol_index,
            self.translation_scale * out.translation,
            out.rotation,
            layout.centroid_start,
        )

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator | None = None, draws: StepDraws | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Mean squared atom error of the predicted final pose (in ``sigma`` units); no randomness."""
        pred = self.predict(model, batch)
        error = (pred - batch.pos_target) / self.translation_scale
        return error.pow(2).mean(), {}

    def _sample(self, model, batch, method, steps_per_band, return_trajectory, generator) -> AssemblySample:
        """The one-pass prediction (``method``, ``steps_per_band`` and ``generator`` are ignored)."""
        pos = self.predict(model, batch)
        trajectory = [batch.pos_start, pos] if return_trajectory else None
        return AssemblySample(pos=pos, nfe=1, trajectory=trajectory, ks=[0.0, 1.0] if return_trajectory else None)
