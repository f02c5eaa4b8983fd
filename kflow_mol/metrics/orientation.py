"""Per-molecule pose errors: orientation (degrees, symmetry-aware) and centroid (Å).

PM compares distance matrices and mixes where molecules sit with how they are turned. These
diagnostics separate the two, per molecule, in the frame of the data (no superposition: a
prediction and its target share the frame of the start state, as in the flow's loss):

- ``centroid error`` of molecule m: ``|c_pred_m - c_target_m|`` with unweighted centroids.
- ``orientation error`` of molecule m: the geodesic angle (degrees, in [0, 180]) of the best
  proper rotation taking the predicted atoms onto the target atoms, minimised over the
  molecule's proper symmetries::

      err_m = min_{P in Sym_m} angle(R_P),   R_P = Kabsch(pred_m -> target_m[P])

  ``Sym_m`` are the graph automorphisms ``P`` of the molecule (RDKit, see ``symmetry``) that are
  also geometric symmetries of its target body: after the best proper superposition of
  ``target_m[P]`` on ``target_m`` no atom is off by more than ``symmetry_tol`` (default 0.3 Å).
  Graph automorphisms that are not geometric (a methyl rotor turned by 120° while the rest
  stays, a ring flip that moves hydrogens) are left out: their Kabsch fit would give a
  meaningless, possibly small, angle. Mirror symmetries are left out by the proper-rotation
  fit itself. For benzene ``Sym`` holds the 12 rotations of D6h; for an asymmetric molecule
  only the identity, and the error is the plain angle of ``R_target R_pred^T``.

``shape_rmsd`` is the Kabsch residual of the prediction on the target, minimised over the same
``Sym_m`` on its own (not at the angle's ``P``, which may be an approximate symmetry): ~0 for a
rigid prediction, larger for a deformed molecule (all-atom methods). ``gyration_ratio`` is
the predicted molecule's radius of gyration over its target's (1 for a rigid prediction; below 1
for a molecule drawn towards its centroid, which lowers PM-atom without better packing).

Cost: the automorphisms of each compound are enumerated once (cached in a ``SymmetryCache``)
and screened for geometric symmetry once per call on one copy; then one batched 3x3 SVD per
(molecule, symmetry), for all molecules of all clusters of a batch at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from kflow_mol.metrics.elements import covalent_radii
from kflow_mol.metrics.rmsd import kabsch
from kflow_mol.metrics.symmetry import RDKIT_BOND_FACTOR, CompoundCopies, SymmetryCache
from kflow_mol.rigid import centroids

SYMMETRY_TOL = 0.6
"""Å: largest atom deviation of a graph automorphism, after superposition, that still counts as a symmetry."""

_SHARED_CACHE = SymmetryCache()
_SYMMETRY_SETS: dict[tuple, Tensor] = {}
"""Geometric symmetries found so far, by (graph, tolerance, body fingerprint); see :func:`_symmetries_of`."""


@dataclass
class MoleculeErrors:
    """Pose errors of every molecule.

    Attributes:
        orientation_deg: (M,) symmetry-minimised orientation error (degrees); NaN where the
            prediction is not finite.
        centroid: (M,) centroid error (Å).
        shape_rmsd: (M,) Kabsch residual RMSD (Å), minimised over the symmetries (~0 for rigid
            predictions).
        gyration_ratio: (M,) radius of gyration (unweighted) of the predicted molecule over the
            target's (1 for rigid predictions).
        symmetry_order: (M,) long, proper symmetries counted (1 for an asymmetric molecule).
        truncated: whether an automorphism enumeration hit the cache's cap.
    """

    orientation_deg: Tensor
    centroid: Tensor
    shape_rmsd: Tensor
    gyration_ratio: Tensor
    symmetry_order: Tensor
    truncated: bool


def centroid_errors(pos_pred: Tensor, pos_target: Tensor, mol_index: Tensor, num_mols: int | None = None) -> Tensor:
    """Distance between the predicted and target centroid of every molecule.

    Args:
        pos_pred: (A, 3) predicted atom positions.
        pos_target: (A, 3) target atom positions, same atom order.
        mol_index: (A,) molecule of every atom, 0..M-1 (a batch's global index works).
        num_mols: ``M``; inferred when ``None``.

    Returns:
        (M,) centroid errors (Å).
    """
    num_mols = int(mol_index.max()) + 1 if num_mols is None else num_mols
    return (centroids(pos_pred, mol_index, num_mols) - centroids(pos_target, mol_index, num_mols)).norm(dim=-1)


def gyration_radii(pos: Tensor, mol_index: Tensor, num_mols: int | None = None) -> Tensor:
    """Unweighted radius of gyration of every molecule.

    Args:
        pos: (A, 3) atom positions.
        mol_index: (A,) molecule of every atom, 0..M-1.
        num_mols: ``M``; inferred when ``None``.

    Returns:
        (M,) radii (Å): the root mean square distance of the atoms to their centroid.
    """
    num_mols = int(mol_index.max()) + 1 if num_mols is None else num_mols
    squared = (pos - centroids(pos, mol_index, num_mols)[mol_index]).square().sum(-1)
    total = torch.zeros(num_mols, dtype=pos.dtype, device=pos.device).index_add_(0, mol_index, squared)
    counts = torch.bincount(mol_index, minlength=num_mols).to(pos.dtype)
    return (total / counts).sqrt()


def centroid_spread_ratios(pos_pred: Tensor, pos_target: Tensor, mol_index: Tensor, mol_cluster: Tensor) -> Tensor:
    """How spread out each predicted cluster is against its crystal: centroid gyration ratio.

    The spread of a cluster is the radius of gyration of its molecule centroids. A ratio below 1
    is a compressed cluster: with orientations unknown, compressing lowers PM-atom (atom pairs
    drawn together) while PM-center pays for it, so this column tells such gains apart.

    Args:
        pos_pred: (A, 3) predicted atom positions.
        pos_target: (A, 3) target atom positions, same atom order.
        mol_index: (A,) molecule of every atom, 0..M-1 (global over a batch).
        mol_cluster: (M,) cluster of every molecule, 0..C-1.

    Returns:
        (C,) predicted over target centroid spread.
    """
    num_mols, num_clusters = int(mol_index.max()) + 1, int(mol_cluster.max()) + 1
    spread = [
        gyration_radii(centroids(pos, mol_index, num_mols), mol_cluster, num_clusters) for pos in (pos_pred, pos_target)
    ]
    return spread[0] / spread[1]


def rotation_angle_deg(rotation: Tensor) -> Tensor:
    """Geodesic angle of rotation matrices, accurate near 0 and 180 degrees.

    Args:
        rotation: (..., 3, 3) proper rotations.

    Returns:
        (...,) angles in degrees, in [0, 180].
    """
    skew = torch.stack(
        [
            rotation[..., 2, 1] - rotation[..., 1, 2],
            rotation[..., 0, 2] - rotation[..., 2, 0],
            rotation[..., 1, 0] - rotation[..., 0, 1],
        ],
        dim=-1,
    )
    cos = (rotation.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.atan2(skew.norm(dim=-1) / 2, cos))


def molecule_bonds(pos: Tensor, z: Tensor, mol_index: Tensor, bond_factor: float = RDKIT_BOND_FACTOR) -> Tensor:
    """Covalent bonds within molecules (the rule of :func:`~kflow_mol.metrics.symmetry.perceive_bonds`).

    Works per molecule (molecules of equal size at once), so a batch of many clusters never
    builds an all-atom pair matrix.

    Args:
        pos: (A, 3) positions (use the target).
        z: (A,) atomic numbers.
        mol_index: (A,) molecule of every atom, 0..M-1.
        bond_factor: bond when distance < bond_factor * (r_i + r_j).

    Returns:
        (E, 2) long global atom pairs, i < j.
    """
    order = torch.argsort(mol_index, stable=True)
    sizes = torch.bincount(mol_index)
    offsets = torch.cumsum(sizes, 0) - sizes
    radii = covalent_radii(z.to(pos.device), dtype=pos.dtype)
    out = []
    for size in torch.unique(sizes[sizes > 0]).tolist():
        molecules = torch.nonzero(sizes == size).flatten()
        atoms = order[offsets[molecules, None] + torch.arange(size, device=order.device)]  # (G, n)
        distance = (pos[atoms][:, :, None] - pos[atoms][:, None]).norm(dim=-1)
        limit = bond_factor * (radii[atoms][:, :, None] + radii[atoms][:, None])
        g, i, j = torch.nonzero(torch.triu(distance < limit, diagonal=1), as_tuple=True)
        pairs = torch.stack([atoms[g, i], atoms[g, j]], -1)
        out.append(torch.sort(pairs, dim=-1).values)
    return torch.cat(out) if out else torch.zeros(0, 2, dtype=torch.long, device=pos.device)


def _max_deviation(reference: Tensor, moving: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Kabsch fit of ``moving`` onto ``reference`` (broadcast over leading dims).

    Returns:
        rotation (..., 3, 3), max atom deviation (...,), RMSD (...,).
    """
    fit = kabsch(reference, moving)
    deviation = (fit.apply(moving) - reference).norm(dim=-1)
    return fit.rotation, deviation.amax(-1), deviation.square().mean(-1).sqrt()


def geometric_symmetries(body: Tensor, automorphisms: Tensor, tol: float = SYMMETRY_TOL) -> Tensor:
    """Automorphisms of one copy's target body that a proper rotation realises within ``tol``.

    A cheap necessary test runs first: a symmetry keeps every atom's distance to the centroid
    (within ``tol``); the Kabsch fit then runs on the survivors only.

    Args:
        body: (T, 3) target atoms, canonical order.
        automorphisms: (S, T) graph automorphisms, identity first.
        tol: Å.

    Returns:
        (S', T) the geometric symmetries, identity first.
    """
    radius = (body - body.mean(0)).norm(dim=-1)
    candidates = automorphisms[(radius[automorphisms] - radius).abs().amax(-1) <= tol]
    _, deviation, _ = _max_deviation(body[candidates], body.expand(candidates.shape[0], -1, -1))
    keep = deviation <= tol
    keep[0] = True  # the identity, exactly
    return candidates[keep]


def _symmetries_of(key: tuple, body: Tensor, automorphisms: Tensor, tol: float) -> Tensor:
    """:func:`geometric_symmetries`, remembered per graph and body shape.

    The body is fingerprinted by its atoms' distances to the centroid, rounded to 0.1 Å
    (rotation-invariant): copies of one compound from one crystal share the entry; a rounding
    that falls the other way only costs a recomputation.
    """
    radius = (body - body.mean(0)).norm(dim=-1)
    entry = (key, tol, tuple(torch.round(radius * 10).long().tolist()))
    if entry not in _SYMMETRY_SETS:
        _SYMMETRY_SETS[entry] = geometric_symmetries(body.cpu(), automorphisms.cpu(), tol)
    return _SYMMETRY_SETS[entry].to(body.device)


def _compounds(
    z: Tensor, mol_index: Tensor, bonds: Tensor, cache: SymmetryCache, device: torch.device
) -> tuple[list[tuple[tuple, CompoundCopies]], bool]:
    """Copies of each compound among all molecules (:func:`~kflow_mol.metrics.symmetry.cluster_topology`,
    with one pass over sorted atoms instead of one mask per molecule).

    Args:
        z: (A,) atomic numbers.
        mol_index: (A,) molecule of every atom, 0..M-1.
        bonds: (E, 2) intra-molecular bonds.
        cache: RDKit canonical forms and automorphisms, per graph.
        device: where the index tensors go.

    Returns:
        ``(graph key, CompoundCopies)`` per compound, and whether an enumeration was truncated.
    """
    mol = mol_index.long().cpu()
    order = torch.argsort(mol, stable=True)
    sizes = torch.bincount(mol).tolist()
    local = torch.empty_like(order)
    local[order] = torch.cat([torch.arange(n) for n in sizes])
    bonds = bonds.long().cpu()
    bond_order = torch.argsort(mol[bonds[:, 0]], stable=True)
    bond_sizes = torch.bincount(mol[bonds[:, 0]], minlength=len(sizes)).tolist()
    numbers = z.long().cpu()[order].split(sizes)
    atom_lists = order.split(sizes)
    local_bonds = local[bonds[bond_order]].split(bond_sizes)
    groups: dict[tuple, list[tuple[int, Tensor]]] = {}
    for m, (atoms, atom_numbers, mol_bonds) in enumerate(zip(atom_lists, numbers, local_bonds)):
        graph = cache.canonical(tuple(atom_numbers.tolist()), tuple(map(tuple, mol_bonds.tolist())))
        groups.setdefault(graph.key, []).append((m, atoms[list(graph.order)]))
    compounds, truncated = [], False
    for key, copies in groups.items():
        automorphisms, cut = cache.automorphisms(key)
        truncated |= cut
        members = torch.tensor([m for m, _ in copies], device=device)
        atoms = torch.stack([a for _, a in copies]).to(device)
        compounds.append((key, CompoundCopies(members, atoms, automorphisms.to(device))))
    return compounds, truncated


def _compound_errors(pred: Tensor, target: Tensor, symmetries: Tensor, tol: float) -> tuple[Tensor, ...]:
    """Orientation error, residual and symmetry count of every copy of one compound.

    Args:
        pred: (G, T, 3) predicted atoms of the G copies, canonical atom order (finite).
        target: (G, T, 3) target atoms.
        symmetries: (S', T) candidate symmetries (identity first), checked again on every copy.
        tol: symmetry tolerance (Å).

    Returns:
        angle (G,) degrees, shape RMSD (G,), symmetry order (G,).
    """
    permuted = target[:, symmetries]  # (G, S', T, 3)
    _, self_deviation, _ = _max_deviation(permuted, target[:, None].expand_as(permuted))
    valid = self_deviation <= tol
    valid[:, 0] = True
    rotation, _, rmsd = _max_deviation(permuted, pred[:, None].expand_as(permuted))
    angle = rotation_angle_deg(rotation).masked_fill(~valid, math.inf)
    # the shape residual is minimised on its own: the smallest-angle symmetry may be an
    # approximate one (within tol), whose residual says nothing about a rigid prediction
    shape = rmsd.masked_fill(~valid, math.inf).min(1).values
    return angle.min(1).values, shape, valid.sum(1)


@torch.no_grad()
def molecule_errors(
    pos_pred: Tensor,
    pos_target: Tensor,
    z: Tensor,
    mol_index: Tensor,
    *,
    cache: SymmetryCache | None = None,
    symmetry_tol: float = SYMMETRY_TOL,
    bond_factor: float = RDKIT_BOND_FACTOR,
) -> MoleculeErrors:
    """Orientation and centroid error of every molecule (see the module docstring).

    Args:
        pos_pred: (A, 3) predicted atom positions (any float dtype; computed in float64).
        pos_target: (A, 3) target atom positions, same atom order.
        z: (A,) atomic numbers.
        mol_index: (A,) molecule of every atom, 0..M-1; a PyG batch's global ``mol_index`` scores
            all clusters of the batch at once (copies of one compound share their symmetry work).
        cache: a SymmetryCache reused across calls (default: one shared by the process).
        symmetry_tol: Å, largest superposed atom deviation of a geometric symmetry.
        bond_factor: bond perception factor on the sum of covalent radii.

    Returns:
        :class:`MoleculeErrors` with (M,) fields, on the device of ``pos_pred``.
    """
    device = pos_pred.device
    pred, target = pos_pred.detach().double(), pos_target.detach().to(device).double()
    mol_index = mol_index.to(device).long()
    num_mols = int(mol_index.max()) + 1
    finite = torch.isfinite(centroids(pred, mol_index, num_mols)).all(-1)
    pred = torch.where(finite[mol_index, None], pred, target)  # scored as NaN below
    bonds = molecule_bonds(target, z.to(device), mol_index, bond_factor)
    compounds, truncated = _compounds(z, mol_index, bonds, cache or _SHARED_CACHE, device)
    angle = torch.full((num_mols,), math.nan, dtype=pred.dtype, device=device)
    rmsd, order = torch.full_like(angle, math.nan), torch.ones(num_mols, dtype=torch.long, device=device)
    for key, compound in compounds:
        copies = target[compound.atoms]  # (G, T, 3)
        symmetries = _symmetries_of(key, copies[0], compound.automorphisms, symmetry_tol)
        values = _compound_errors(pred[compound.atoms], copies, symmetries, symmetry_tol)
        angle[compound.members], rmsd[compound.members], order[compound.members] = values
    nan = torch.full_like(angle, math.nan)
    gyration = gyration_radii(pred, mol_index, num_mols) / gyration_radii(target, mol_index, num_mols)
    return MoleculeErrors(
        orientation_deg=torch.where(finite, angle, nan),
        centroid=torch.where(finite, centroid_errors(pred, target, mol_index, num_mols), nan),
        shape_rmsd=torch.where(finite, rmsd, nan),
        gyration_ratio=torch.where(finite, gyration, nan),
        symmetry_order=order,
        truncated=truncated,
    )


def orientation_errors(pos_pred: Tensor, pos_target: Tensor, z: Tensor, mol_index: Tensor, **options) -> Tensor:
    """Symmetry-minimised orientation error of every molecule (degrees).

    Args:
        pos_pred: (A, 3) predicted atom positions.
        pos_target: (A, 3) target atom positions, same atom order.
        z: (A,) atomic numbers.
        mol_index: (A,) molecule of every atom, 0..M-1 (a batch's global index works).
        **options: ``cache``, ``symmetry_tol``, ``bond_factor`` of :func:`molecule_errors`.

    Returns:
        (M,) float64 angles in [0, 180] (NaN for non-finite predictions).
    """
    return molecule_errors(pos_pred, pos_target, z, mol_index, **options).orientation_deg


@dataclass
class ClusterPoseErrors:
    """Per-cluster summaries of the per-molecule errors.

    Attributes:
        orientation_deg: (C,) mean orientation error over the cluster's molecules.
        orientation_median_deg: (C,) median orientation error over the cluster's molecules.
        centroid: (C,) mean centroid error (Å).
        shape_rmsd: (C,) mean Kabsch residual of the cluster's molecules (Å; 0 when rigid).
        gyration_ratio: (C,) mean predicted / target radius of gyration (1 when rigid).
    """

    orientation_deg: Tensor
    orientation_median_deg: Tensor
    centroid: Tensor
    shape_rmsd: Tensor
    gyration_ratio: Tensor


def cluster_pose_errors(errors: MoleculeErrors, mol_cluster: Tensor) -> ClusterPoseErrors:
    """Means (and the orientation median) over each cluster's molecules.

    Args:
        errors: per-molecule errors, (M,) fields.
        mol_cluster: (M,) sorted cluster of every molecule (a batch's ``mol_batch``), 0..C-1.

    Returns:
        :class:`ClusterPoseErrors` with (C,) fields.
    """
    counts = torch.bincount(mol_cluster.to(errors.orientation_deg.device)).tolist()

    def per_cluster(values: Tensor, reduce=Tensor.mean) -> Tensor:
        return torch.stack([reduce(part) for part in values.split(counts)])

    return ClusterPoseErrors(
        orientation_deg=per_cluster(errors.orientation_deg),
        orientation_median_deg=per_cluster(errors.orientation_deg, Tensor.median),
        centroid=per_cluster(errors.centroid),
        shape_rmsd=per_cluster(errors.shape_rmsd),
        gyration_ratio=per_cluster(errors.gyration_ratio),
    )
