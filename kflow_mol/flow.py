"""Old import path of the assembly flow: everything now lives in :mod:`kflow_mol.systems`.

The rigid K-Flow (:class:`AssemblyFlow`, the ``kflow`` system) is
:mod:`kflow_mol.systems.rigid_kflow`; the system contract (:class:`AssemblySystem`) and the
batch bookkeeping are :mod:`kflow_mol.systems.base`. ``from kflow_mol.flow import ...`` keeps
working for every name below.
"""

from kflow_mol.systems.base import AssemblySample, AssemblySystem, ClusterLayout, cluster_layout, positive_scale
from kflow_mol.systems.rigid_kflow import (
    BAND_EDGE_TOLERANCE,
    MODES,
    PARAMETRIZATIONS,
    POSE_ORDERS,
    REMAINING_FLOOR,
    ROTATION_FRAMES,
    START_MOTIONS,
    AssemblyFlow,
    translation_scale_of,
)

__all__ = [
    "BAND_EDGE_TOLERANCE",
    "MODES",
    "PARAMETRIZATIONS",
    "POSE_ORDERS",
    "REMAINING_FLOOR",
    "ROTATION_FRAMES",
    "START_MOTIONS",
    "AssemblyFlow",
    "AssemblySample",
    "AssemblySystem",
    "ClusterLayout",
    "cluster_layout",
    "positive_scale",
    "translation_scale_of",
]
