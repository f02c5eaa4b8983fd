"""Pack a molecule: predict how 17 rigid copies of it pack, with the shipped K-Flow model.

    python scripts/assemble.py input=CC(=O)Oc1ccccc1C(=O)O                  # a SMILES (aspirin)
    python scripts/assemble.py input=molecule.sdf num_mols=17 samples=8     # SDF / MOL / PDB / XYZ
    python scripts/assemble.py input=crystal.cif start=local                # a crystal: PM vs the real packing
    python scripts/assemble.py input=folder/ output=outputs/batch           # batch mode
    python scripts/assemble.py input=... model=outputs/run/checkpoints/best.pt

Writes the predicted cluster (CIF, XYZ, PDB), the trajectory along k, report.json and a PNG
(:func:`kflow_mol.assemble.write_result`). Bad input: one line on stderr, exit 2. Every option
and its default: ``--help`` or :class:`kflow_mol.assemble.AssembleConfig`.
"""

from kflow_mol.assemble_cli import main

if __name__ == "__main__":
    main()
