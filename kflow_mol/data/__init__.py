"""Molecular assembly data: real crystals → 17-molecule clusters with rigid start states.

Main entry points: :func:`build_assembly_dataset`, :func:`load_assembly_dataset`,
:func:`load_embedded_dataset` and the record type :class:`AssemblyData`.
"""

from kflow_mol.data.dataset import (
    AssemblyData,
    BuildReport,
    build_assembly_dataset,
    default_cache_root,
    load_assembly_dataset,
    load_embedded_dataset,
)
from kflow_mol.data.start_states import START_PRESETS, StartScheme

__all__ = [
    "AssemblyData",
    "BuildReport",
    "START_PRESETS",
    "StartScheme",
    "build_assembly_dataset",
    "default_cache_root",
    "load_assembly_dataset",
    "load_embedded_dataset",
]
