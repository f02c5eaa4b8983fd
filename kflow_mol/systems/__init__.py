"""The COD-Cluster17 systems of the K-Flow paper's Table 5, behind one interface.

Every system is an :class:`~kflow_mol.systems.base.AssemblySystem` (its contract is checked
when it is built) and has

* ``loss(model, batch, generator=None, draws=None) -> (scalar loss, {name: float})``;
* ``sample(model, batch, *, method="euler", steps_per_band=..., return_trajectory=False,
  generator=None) -> kflow_mol.flow.AssemblySample`` (single-band systems: ``steps_per_band``
  is the total step count; ``None`` uses the system's default);
* ``head`` (``"rigid"``, ``"atom"`` or ``"pose"``: the :func:`kflow_mol.models.build_model` head it needs),
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
- ``kflow_assembleflow`` (``K`` bands): K-Flow with K graph-spectral bands on AssembleFlow's
  parametrisation; rigid head; deterministic; 50 Euler steps in total.
- ``kflow`` (``K`` bands): the project's own rigid K-Flow (rigid FM at ``K = 1``, all-atom
  linear FM with ``mode="cartesian"``), :class:`~kflow_mol.systems.rigid_kflow.AssemblyFlow`.

``K`` is a typed argument of the builders of ``kflow`` and ``kflow_assembleflow`` (every other
system has one band); method names such as ``kflow_assembleflow_K2`` are parsed once, by
:func:`kflow_mol.config.parse_method`.
:meth:`kflow_mol.experiment.TrainedRun.evaluate` scores n draws per cluster of a stochastic
system (min and mean over draws, AssembleFlow's protocol; :func:`kflow_mol.evaluate.evaluate_samples`)
and one of a deterministic one.

Example:
    >>> system = build_system("kflow_assembleflow", translation_scale=2.0, K=2)
    >>> model = build_model("S", head=system.head)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from kflow_mol.systems.assembleflow import AssembleFlowSystem
from kflow_mol.systems.base import AssemblySample, AssemblySystem
from kflow_mol.systems.crystal_flow import CrystalFlow, CrystalFlowLERP
from kflow_mol.systems.crystal_sde import CrystalSDE
from kflow_mol.systems.gnn_md import GNNMD
from kflow_mol.systems.rigid_kflow import AssemblyFlow


def kflow(*, translation_scale: float, K: int, **options) -> AssemblyFlow:
    """The project's rigid K-Flow with ``K`` graph-spectral bands (``options``: :class:`AssemblyFlow`'s)."""
    return AssemblyFlow(num_bands=K, translation_scale=translation_scale, **options)


def kflow_assembleflow(*, translation_scale: float, K: int, **options) -> AssembleFlowSystem:
    """K-Flow with ``K`` bands on AssembleFlow's parametrisation (``options``: :class:`AssembleFlowSystem`'s)."""
    return AssembleFlowSystem(translation_scale=translation_scale, num_bands=K, **options)


SYSTEMS: dict[str, Callable[..., AssemblySystem]] = {
    "kflow": kflow,
    "gnn_md": GNNMD,
    "crystalsde_ve": partial(CrystalSDE, "ve"),
    "crystalsde_vp": partial(CrystalSDE, "vp"),
    "crystalflow_ve": partial(CrystalFlow, "ve"),
    "crystalflow_vp": partial(CrystalFlow, "vp"),
    "crystalflow_lerp": CrystalFlowLERP,
    "assembleflow": AssembleFlowSystem,
    "kflow_assembleflow": kflow_assembleflow,
}
"""Name -> builder ``(translation_scale=..., **options)``; builders with a ``K: int`` parameter take bands."""


def system_names() -> list[str]:
    """The registry names."""
    return list(SYSTEMS)


def takes_bands(name: str) -> bool:
    """Whether system ``name`` has a ``K`` (number of bands) argument; the others have one band."""
    return "K" in inspect.signature(SYSTEMS[name]).parameters


def build_system(name: str, *, translation_scale: float, K: int = 1, **options) -> AssemblySystem:
    """A system by registry name.

    Args:
        name: a key of :data:`SYSTEMS`.
        translation_scale: ``sigma`` (Å), e.g. :func:`kflow_mol.flow.translation_scale_of` of the train set.
        K: number of bands (>= 1); must be 1 unless the system :func:`takes_bands`.
        **options: constructor options of the system (e.g. ``sigma_max``, ``rotation_weight``).

    Returns:
        The system object (its :class:`~kflow_mol.systems.base.AssemblySystem` contract checked).
    """
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; choose one of {system_names()}")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"system {name!r}: num_bands (K) must be >= 1, got {K!r}")
    if takes_bands(name):
        options["K"] = K
    elif K != 1:
        bands = [n for n in SYSTEMS if takes_bands(n)]
        raise ValueError(f"system {name!r} has one band; got K={K} (systems with bands: {bands})")
    try:
        return SYSTEMS[name](translation_scale=translation_scale, **options)
    except TypeError as error:
        raise ValueError(f"system {name!r}: bad option ({error})") from None


__all__ = [
    "SYSTEMS",
    "AssembleFlowSystem",
    "AssemblyFlow",
    "AssemblySample",
    "AssemblySystem",
    "CrystalFlow",
    "CrystalFlowLERP",
    "CrystalSDE",
    "GNNMD",
    "build_system",
    "system_names",
    "takes_bands",
]
