"""Writers for predicted clusters: XYZ trajectories along k and CIF files.

Both formats open in OVITO, VESTA, Mercury, ASE and Avogadro. The XYZ files are extended
XYZ (one frame per saved ``k``, with a ``mol`` column holding the molecule index); the CIF
puts the (non-periodic) cluster in a P1 box with ``padding`` Å of vacuum on every side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from ase.data import chemical_symbols
from torch import Tensor


def _symbols(z: Tensor) -> list[str]:
    return [chemical_symbols[int(n)] for n in z.tolist()]


def write_xyz_trajectory(path: str | Path, z: Tensor, frames: Sequence[Tensor], ks: Sequence[float],
                         mol_index: Tensor | None = None, title: str = "") -> Path:
    """Write an extended-XYZ trajectory, one frame per ``k``.

    Args:
        path: output file (``.xyz``).
        z: atomic numbers, shape ``(A,)``.
        frames: positions per frame, each shape ``(A, 3)`` in Å.
        ks: the ``k`` of every frame (same length as ``frames``).
        mol_index: molecule of every atom (within the cluster), shape ``(A,)``.
        title: text added to every comment line.

    Returns:
        The path written.
    """
    if len(frames) != len(ks):
        raise ValueError(f"{path}: {len(frames)} frames but {len(ks)} k values")
    symbols = _symbols(z)
    mols = mol_index.tolist() if mol_index is not None else [0] * len(symbols)
    lines = []
    for pos, k in zip(frames, ks):
        if pos.shape != (len(symbols), 3):
            raise ValueError(f"{path}: frame shape {tuple(pos.shape)} does not match {len(symbols)} atoms")
        lines.append(str(len(symbols)))
        lines.append(f'Properties=species:S:1:pos:R:3:mol:I:1 k={k:.6g} pbc="F F F" comment="{title}"')
        for symbol, (x, y, zz), mol in zip(symbols, pos.tolist(), mols):
            lines.append(f"{symbol} {x:.6f} {y:.6f} {zz:.6f} {mol}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_cluster_cif(path: str | Path, z: Tensor, pos: Tensor, name: str = "cluster",
                      mol_index: Tensor | None = None, padding: float = 10.0) -> Path:
    """Write one cluster as a P1 CIF in an orthogonal box with vacuum padding.

    Args:
        path: output file (``.cif``).
        z: atomic numbers, shape ``(A,)``.
        pos: positions in Å, shape ``(A, 3)``.
        name: data block name.
        mol_index: molecule of every atom, shape ``(A,)`` (used in the atom labels).
        padding: vacuum on each side of the bounding box, Å.

    Returns:
        The path written.
    """
    pos = pos.detach().double().cpu()
    if not torch.isfinite(pos).all():
        raise ValueError(f"{path}: positions contain NaN or inf")
    low = pos.min(0).values - padding
    lengths = (pos.max(0).values + padding - low).clamp_min(1.0)
    frac = (pos - low) / lengths
    mols = mol_index.tolist() if mol_index is not None else [0] * len(z)
    safe_name = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    lines = [f"data_{safe_name}", "_symmetry_space_group_name_H-M   'P 1'", "_symmetry_Int_Tables_number   1",
             f"_cell_length_a   {lengths[0]:.4f}", f"_cell_length_b   {lengths[1]:.4f}",
             f"_cell_length_c   {lengths[2]:.4f}", "_cell_angle_alpha   90", "_cell_angle_beta   90",
             "_cell_angle_gamma   90", "loop_", "_symmetry_equiv_pos_as_xyz", "  'x, y, z'", "loop_",
             "_atom_site_label", "_atom_site_type_symbol", "_atom_site_fract_x", "_atom_site_fract_y",
             "_atom_site_fract_z", "_atom_site_occupancy"]
    for i, (symbol, (fx, fy, fz), mol) in enumerate(zip(_symbols(z), frac.tolist(), mols)):
        lines.append(f"  {symbol}{i + 1}_m{mol} {symbol} {fx:.6f} {fy:.6f} {fz:.6f} 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
