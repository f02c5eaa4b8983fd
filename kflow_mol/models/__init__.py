"""Equivariant networks for molecular assembly (e3nn on torch-geometric graphs)."""

from kflow_mol.models.assembly_gnn import (
    PRESETS,
    START_SCALARS,
    AssemblyGNN,
    AssemblyVelocity,
    StartFeatures,
    build_model,
)

__all__ = ["PRESETS", "START_SCALARS", "AssemblyGNN", "AssemblyVelocity", "StartFeatures", "build_model"]
