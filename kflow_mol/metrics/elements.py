"""Covalent radii (Å) by atomic number, Cordero et al., Dalton Trans. 2008, 2832 (as in ASE).

Carbon uses the sp3 value (0.76 Å). Elements 1..86 (H..Rn) are tabulated.
"""

from __future__ import annotations

import torch
from torch import Tensor

# COVALENT_RADII[z - 1] is the radius of atomic number z.
COVALENT_RADII: tuple[float, ...] = (
    0.31,
    0.28,
    1.28,
    0.96,
    0.84,
    0.76,
    0.71,
    0.66,
    0.57,
    0.58,
    1.66,
    1.41,
    1.21,
    1.11,
    1.07,
    1.05,
    1.02,
    1.06,
    2.03,
    1.76,
    1.70,
    1.60,
    1.53,
    1.39,
    1.39,
    1.32,
    1.26,
    1.24,
    1.32,
    1.22,
    1.22,
    1.20,
    1.19,
    1.20,
    1.20,
    1.16,
    2.20,
    1.95,
    1.90,
    1.75,
    1.64,
    1.54,
    1.47,
    1.46,
    1.42,
    1.39,
    1.45,
    1.44,
    1.42,
    1.39,
    1.39,
    1.38,
    1.39,
    1.40,
    2.44,
    2.15,
    2.07,
    2.04,
    2.03,
    2.01,
    1.99,
    1.98,
    1.98,
    1.96,
    1.94,
    1.92,
    1.92,
    1.89,
    1.90,
    1.87,
    1.87,
    1.75,
    1.70,
    1.62,
    1.51,
    1.44,
    1.41,
    1.36,
    1.36,
    1.32,
    1.45,
    1.46,
    1.48,
    1.40,
    1.50,
    1.50,
)


def covalent_radii(atomic_numbers: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Covalent radius of every atom.

    Args:
        atomic_numbers: (...,) integer atomic numbers in 1..86.
        dtype: floating dtype of the result.

    Returns:
        (...,) radii in Å on the device of ``atomic_numbers``.

    Raises:
        ValueError: if an atomic number is outside the table.
    """
    z = torch.as_tensor(atomic_numbers).long()
    if z.numel() and (int(z.min()) < 1 or int(z.max()) > len(COVALENT_RADII)):
        bad = z[(z < 1) | (z > len(COVALENT_RADII))].unique().tolist()
        raise ValueError(f"no covalent radius for atomic number(s) {bad} (table covers 1..86)")
    table = torch.tensor(COVALENT_RADII, dtype=dtype, device=z.device)
    return table[z - 1]
