"""Molecular assembly data: real crystals → 17-molecule clusters with rigid start states.

Main entry points: :func:`build_assembly_dataset`, :func:`load_assembly_dataset`,
:func:`load_embedded_dataset`, the record type :class:`AssemblyData` and the lazy, memory-mapped
:class:`AssemblyDataset` that the loaders return. They are imported
on first use, so ``kflow_mol.data.<module>`` stays cheap to import.
"""

from importlib import import_module

_EXPORTS = {
    "AssemblyData": "dataset",
    "AssemblyDataset": "dataset",
    "BuildReport": "build",
    "NoInputError": "build",
    "collate_clusters": "dataset",
    "build_assembly_dataset": "build",
    "default_cache_root": "build",
    "load_assembly_dataset": "dataset",
    "load_embedded_dataset": "build",
    "START_PRESETS": "start_states",
    "StartScheme": "start_states",
    "CrystalRejected": "crystals",
    "REJECTION_REASONS": "crystals",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"kflow_mol.data.{_EXPORTS[name]}"), name)
