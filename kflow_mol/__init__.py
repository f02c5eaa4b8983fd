"""K-Flow molecular assembly: crystal clusters (data), rigid-body flow, models and metrics.

``kflow_mol.assemble(molecule_or_path, ...)`` packs a molecule with the shipped model
(:mod:`kflow_mol.assemble`; imported on first use, so ``import kflow_mol`` stays light).
"""


def __getattr__(name: str):
    if name == "assemble":
        import importlib

        return importlib.import_module("kflow_mol.assemble")  # a callable module: assemble(...)
    raise AttributeError(f"module 'kflow_mol' has no attribute {name!r}")
