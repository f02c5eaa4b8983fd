"""The COD-Cluster17 systems of the K-Flow paper's Table 5, behind one interface.

Every system has

* ``loss(model, batch, generator=None, draws=None) -> (scalar loss, {name: float})``;
* ``sample(model, batch, *, method="euler", steps_per_band=..., return_trajectory=False,
  generator=None) -> kflow_mol.flow.AssemblySample`` (single-band systems: ``steps_per_band``
  is the total step count; ``None`` uses the system's default);
* ``head`` (``"rigid"`` or ``"atom"``: the :func:`kflow_mol.models.build_model` head it needs),
  ``stochastic`` (samples depend on ``generator``: score several per cluster), ``num_bands``
  and ``default_steps`` (total sampling steps).

Systems (name: what; head; samples; default sampler):

- ``gnn_md``: one-pass rigid regression; rigid head; deterministic; 1 network pass.
- ``crystalsde_ve`` / ``crystalsde_vp``: VE / VP score diffusion on all atoms; atom head;
  stochastic; 100 Euler--Maruyama steps (``method="pc"`` or ``"ode"`` too).
- ``crystalflow_ve`` / ``crystalflow_vp``: flow matching with the VE / VP Gaussian path; atom
  head; stochastic; 50 Euler steps (``heun``, ``rk4`` too).
- ``crystalflow_lerp``: linear FM from the start state (``AssemblyFlow(mode="cartesian")``);
  atom head; deterministic; 12 steps.
- ``assembleflow``: AssembleFlow (inertial frames, LERP + SLERP, end-pose prediction); rigid
  head; deterministic; 50 Euler steps.
- ``kflow_assembleflow_K<n>``: K-Flow with n graph-spectral bands on AssembleFlow's
  parametrisation; rigid head; deterministic; 50 Euler steps in total.

The project's own rigid K-Flow and rigid FM stay :class:`kflow_mol.flow.AssemblyFlow`.
:meth:`kflow_mol.experiment.TrainedRun.evaluate` scores n draws per cluster of a stochastic
system (min and mean over draws, AssembleFlow's protocol; :func:`kflow_mol.evaluate.evaluate_samples`)
and one of a deterministic one.

Example:
    >>> system = build_system("kflow_assembleflow_K2", translation_scale=2.0)
    >>> model = build_model("S", head=system.head)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from kflow_mol.systems.assembleflow import AssembleFlowSystem
from kflow_mol.systems.crystal_flow import CrystalFlow, CrystalFlowLERP
from kflow_mol.systems.crystal_sde import CrystalSDE
from kflow_mol.systems.gnn_md import GNNMD

SYSTEMS: dict[str, Callable[..., object]] = {
    "gnn_md": GNNMD,
    "crystalsde_ve": partial(CrystalSDE, "ve"),
    "crystalsde_vp": partial(CrystalSDE, "vp"),
    "crystalflow_ve": partial(CrystalFlow, "ve"),
    "crystalflow_vp": partial(CrystalFlow, "vp"),
    "crystalflow_lerp": CrystalFlowLERP,
    "assembleflow": AssembleFlowSystem,
}
"""Fixed names -> factories ``(translation_scale=..., **options)``; ``kflow_assembleflow_K<n>`` is parsed."""

KFLOW_ASSEMBLEFLOW = re.compile(r"kflow_assembleflow_K(\d+)")


def system_names() -> list[str]:
    """The fixed registry names plus the pattern ``kflow_assembleflow_K<n>``."""
    return [*SYSTEMS, "kflow_assembleflow_K<n>"]


def is_system(name: str) -> bool:
    """Whether ``name`` is a registry name or matches ``kflow_assembleflow_K<n>``."""
    return name in SYSTEMS or KFLOW_ASSEMBLEFLOW.fullmatch(name) is not None


def build_system(name: str, *, translation_scale: float, num_bands: int = 1, **options):
    """A Table-5 system by name.

    Args:
        name: a key of :data:`SYSTEMS` or ``kflow_assembleflow_K<n>`` (n >= 1 bands).
        translation_scale: ``sigma`` (Å), e.g. :func:`kflow_mol.flow.translation_scale_of` of the train set.
        num_bands: must be 1, or equal n for ``kflow_assembleflow_K<n>`` (the name sets K).
        **options: constructor options of the system (e.g. ``sigma_max``, ``rotation_weight``).

    Returns:
        The system object.
    """
    match = KFLOW_ASSEMBLEFLOW.fullmatch(name)
    if match:
        bands = int(match.group(1))
        if bands < 1 or num_bands not in (1, bands):
            raise ValueError(f"system {name!r} has K = {bands} bands; num_bands={num_bands} contradicts it")
        return AssembleFlowSystem(translation_scale=translation_scale, num_bands=bands, **options)
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose one of {system_names()}")
    if num_bands != 1:
        raise ValueError(
            f"system {name!r} has one band; got num_bands={num_bands} "
            "(use kflow_assembleflow_K<n> or the rigid kflow_K<n> for bands)"
        )
    try:
        return SYSTEMS[name](translation_scale=translation_scale, **options)
    except TypeError as error:
        raise ValueError(f"system {name!r}: bad option ({error})") from None


__all__ = [
    "SYSTEMS",
    "AssembleFlowSystem",
    "CrystalFlow",
    "CrystalFlowLERP",
    "CrystalSDE",
    "GNNMD",
    "build_system",
    "is_system",
    "system_names",
]
