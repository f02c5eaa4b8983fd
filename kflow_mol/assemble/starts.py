"""Start states: the virtual fcc crystal of a lone molecule and the drawn start of a cluster."""

from __future__ import annotations

import math

import numpy as np

from kflow_mol.assemble.common import AMU_G_CM3, PACKING_COEFFICIENT, molecular_mass
from kflow_mol.assemble.inputs import AssemblyInput


def van_der_waals_volume(numbers: np.ndarray, positions: np.ndarray, grid: float = 0.25) -> float:
    """Van der Waals volume of one molecule, Å^3 (RDKit ``ComputeMolVolume``, grid ``grid`` Å)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    editable = Chem.RWMol()
    for z in numbers:
        editable.AddAtom(Chem.Atom(int(z)))
    conformer = Chem.Conformer(len(numbers))
    for i, p in enumerate(np.asarray(positions, dtype=float)):
        conformer.SetAtomPosition(i, Point3D(*p))
    mol = editable.GetMol()
    mol.AddConformer(conformer)
    return float(AllChem.ComputeMolVolume(mol, gridSpacing=grid))


def fcc_sites(count: int, volume: float) -> np.ndarray:
    """The ``count`` sites of an fcc lattice (``volume`` Å^3 per site) nearest to a site, that site first."""
    a = (4.0 * volume) ** (1 / 3)
    span = max(2, math.ceil((count / 4) ** (1 / 3)) + 1)
    grid = np.arange(-span, span + 1)
    cells = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    basis = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    points = (cells[:, None] + basis[None]).reshape(-1, 3) * a
    distance = np.linalg.norm(points, axis=1)
    order = np.lexsort((points[:, 2], points[:, 1], points[:, 0], np.round(distance, 6)))[:count]
    return points[order]


def molecule_start(
    molecule: AssemblyInput, num_mols: int, start: str, seed: int, repeat: int = 0, vdw_volume: float | None = None
):
    """An :class:`~kflow_mol.data.dataset.AssemblyData` of ``num_mols`` rigid copies in a start state.

    Crystals: the real cluster with a start drawn as the data pipeline draws it (same seed
    stream: :func:`~kflow_mol.data.start_states.start_rng` of (seed, crystal id, repeat, centre)).
    Lone molecules: the virtual fcc crystal of typical organic density (module docstring) as
    the "target" of the start preset; its poses are never used as a reference.

    Returns:
        ``(data, info)``: the cluster and a dict describing the start (box, density).
    """
    from kflow_mol.data.dataset import cluster_body_frames, rigid_cluster_data
    from kflow_mol.data.start_states import draw_start_state, start_rng, start_scheme

    scheme = start_scheme(start)
    if molecule.reference is not None:
        numbers, positions = molecule.reference
        rot_target, trans_target, body = cluster_body_frames(positions)
        crystal_id = molecule.crystal_id or molecule.name
        info = {"kind": "crystal", "preset": start}
    else:
        numbers, body, rot_target, trans_target, info = _virtual_crystal(molecule, num_mols, start, vdw_volume)
        crystal_id = f"{molecule.name}:{molecule.formula}"
    rng = start_rng(seed, crystal_id, repeat, 0)
    rot_start, trans_start = draw_start_state(body, rot_target, trans_target, scheme, rng, crystal_id)
    meta = {
        "cluster_id": f"{crystal_id}_r{repeat}_c0",
        "crystal_id": crystal_id,
        "formula": molecule.formula,
        "source": molecule.kind,
        "synthetic": molecule.reference is None,
        "start_scheme": scheme.name,
    }
    data = rigid_cluster_data(numbers, body, rot_start, trans_start, rot_target, trans_target, meta)
    return data, info


def _virtual_crystal(molecule: AssemblyInput, num_mols: int, start: str, vdw_volume: float | None):
    """The "target" of a lone molecule's start: ``num_mols`` copies on fcc sites at typical organic density.

    Args:
        molecule: the lone molecule.
        num_mols: copies.
        start: the start preset name.
        vdw_volume: its van der Waals volume, Å^3 (None: computed).

    Returns:
        ``(numbers (M, n), body (M, n, 3), rot_target (M, 3, 3), trans_target (M, 3), info)``; ``info``
        describes the virtual crystal and, for box presets, the start box.
    """
    from kflow_mol.data.clusters import body_frame
    from kflow_mol.data.start_states import start_scheme

    scheme = start_scheme(start)
    _, _, body_one = body_frame(molecule.positions)
    body = np.repeat(body_one[None], num_mols, axis=0)
    numbers = np.repeat(molecule.numbers[None], num_mols, axis=0)
    vdw = vdw_volume if vdw_volume is not None else van_der_waals_volume(molecule.numbers, molecule.positions)
    volume = vdw / PACKING_COEFFICIENT
    trans_target = fcc_sites(num_mols, volume)
    rot_target = np.repeat(np.eye(3)[None], num_mols, axis=0)
    centre = trans_target.mean(axis=0)
    radius = float(np.linalg.norm(trans_target - centre, axis=1).max())
    info = {
        "kind": "virtual_fcc",
        "preset": start,
        "vdw_volume_A3": round(vdw, 2),
        "packing_coefficient": PACKING_COEFFICIENT,
        "volume_per_molecule_A3": round(volume, 2),
        "cluster_radius_A": round(radius, 3),
    }
    if scheme.displacement == "box":
        half = scheme.scale * radius
        info["box_half_width_A"] = round(half, 3)
        info["box_density_g_cm3"] = round(num_mols * molecular_mass(molecule.numbers) * AMU_G_CM3 / (2 * half) ** 3, 4)
    return numbers, body, rot_target, trans_target, info
