"""Equivariant networks for molecular assembly (e3nn on torch-geometric graphs)."""
from kflow_mol.models.assembly_gnn import PRESETS, AssemblyGNN, AssemblyVelocity, build_model

__all__ = ["PRESETS", "AssemblyGNN", "AssemblyVelocity", "build_model"]
