"""Writers for predicted clusters, through ``ase.io``: XYZ trajectories along k and CIF files.

Both formats open in OVITO, VESTA, Mercury, ASE and Avogadro. The XYZ files are extended
XYZ (one frame per saved ``k`` in the ``k`` key of the comment line, with a ``mol`` column
holding the molecule index); the CIF puts the (non-periodic) cluster in a P1 box with
``padding`` Å of vacuum on every side, its atom labels carry the molecule (``C12_m3``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from ase import Atoms
from ase.io import write
from torch import Tensor

if TYPE_CHECKING:
    from kflow_mol.evaluate import MethodScores


def _atoms(z: Tensor, pos: Tensor, mol_index: Tensor | None, path: str | Path) -> Atoms:
    pos = pos.detach().double().cpu()
    if pos.shape != (len(z), 3):
        raise ValueError(f"{path}: frame shape {tuple(pos.shape)} does not match {len(z)} atoms")
    if not torch.isfinite(pos).all():
        raise ValueError(f"{path}: positions contain NaN or inf")
    atoms = Atoms(numbers=z.cpu().numpy(), positions=pos.numpy())
    mols = mol_index.cpu().numpy() if mol_index is not None else np.zeros(len(z), dtype=int)
    atoms.set_array("mol", mols.astype(int))
    return atoms


def write_xyz_trajectory(
    path: str | Path,
    z: Tensor,
    frames: Sequence[Tensor],
    ks: Sequence[float],
    mol_index: Tensor | None = None,
    title: str = "",
) -> Path:
    """Write an extended-XYZ trajectory, one frame per ``k``.

    Args:
        path: output file (``.xyz``).
        z: atomic numbers, shape ``(A,)``.
        frames: positions per frame, each shape ``(A, 3)`` in Å.
        ks: the ``k`` of every frame (same length as ``frames``).
        mol_index: molecule of every atom (within the cluster), shape ``(A,)``.
        title: text stored as ``comment`` on every frame.

    Returns:
        The path written.
    """
    if len(frames) != len(ks):
        raise ValueError(f"{path}: {len(frames)} frames but {len(ks)} k values")
    images = []
    for pos, k in zip(frames, ks):
        atoms = _atoms(z, pos, mol_index, path)
        atoms.info.update(k=float(k), comment=title)
        images.append(atoms)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, images, format="extxyz")
    return path


def write_cluster_cif(
    path: str | Path,
    z: Tensor,
    pos: Tensor,
    name: str = "cluster",
    mol_index: Tensor | None = None,
    padding: float = 10.0,
) -> Path:
    """Write one cluster as a P1 CIF in an orthogonal box with vacuum padding.

    Args:
        path: output file (``.cif``).
        z: atomic numbers, shape ``(A,)``.
        pos: positions in Å, shape ``(A, 3)``.
        name: unused by the CIF writer of ASE (kept for the file name of callers).
        mol_index: molecule of every atom, shape ``(A,)`` (used in the atom labels).
        padding: vacuum on each side of the bounding box, Å.

    Returns:
        The path written.
    """
    atoms = _atoms(z, pos, mol_index, path)
    low = atoms.positions.min(0) - padding
    lengths = np.maximum(atoms.positions.max(0) + padding - low, 1.0)
    atoms.positions -= low
    atoms.set_cell(np.diag(lengths))
    atoms.pbc = True
    labels = [
        f"{symbol}{i + 1}_m{mol}"
        for i, (symbol, mol) in enumerate(zip(atoms.get_chemical_symbols(), atoms.get_array("mol")))
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, atoms, format="cif", labels=[labels])
    return path


def export_clusters(out_dir: Path, clusters: list, scores: MethodScores, count: int) -> None:
    """XYZ trajectories along k and CIFs (prediction, crystal, start) of the first ``count`` clusters.

    Args:
        out_dir: the run folder (writes ``trajectories/<id>.xyz`` and ``clusters/<id>_<tag>.cif``).
        clusters: the scored ``AssemblyData`` clusters.
        scores: their scores, with ``predictions`` kept.
        count: how many to export (-1: all).
    """
    count = len(clusters) if count < 0 else min(count, len(clusters))
    for cluster, prediction in zip(clusters[:count], scores.predictions[:count]):
        name = cluster.cluster_id
        mol = cluster.mol_index - cluster.mol_index.min()
        frames = list(prediction.trajectory or [prediction.pos]) + [cluster.pos_target]
        ks = list(prediction.ks or [float("nan")]) + [float("inf")]  # last frame: the crystal
        write_xyz_trajectory(
            out_dir / "trajectories" / f"{name}.xyz",
            cluster.z,
            frames,
            ks,
            mol,
            title=f"{name} {scores.name}; last frame = crystal",
        )
        for tag, pos in (("pred", prediction.pos), ("crystal", cluster.pos_target), ("start", cluster.pos_start)):
            write_cluster_cif(out_dir / "clusters" / f"{name}_{tag}.cif", cluster.z, pos, f"{name}_{tag}", mol)
