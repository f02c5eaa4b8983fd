"""Permutation-invariant cluster RMSD (RMSD_17), in the spirit of CCDC's COMPACK.

Plain PM and plain RMSD take atom and molecule identity from the data order. A prediction that
places molecule 3 where molecule 5 belongs, or flips a benzene ring onto itself, is a perfect
packing but scores badly. ``rmsd17`` removes both ambiguities:

1. Molecule assignment. The centroid clouds are superposed (Kabsch, proper rotations only) and
   predicted molecules are assigned to true ones by the Hungarian algorithm on squared centroid
   distances, only between copies of the same compound; superposition and assignment are
   iterated until the assignment is stable. Several starts (identity order on centroids and on
   atoms, and the four proper principal-axes frames of the centroid clouds) are tried and the
   one with the lowest centroid deviation is kept. Centroids are unaffected by the atom
   symmetry, so this step is exact with respect to it.
2. Symmetry-equivalent atoms. For every assigned pair, the graph automorphism of the molecule
   (see ``symmetry``) that minimises the squared deviation in the current superposition is
   chosen; the whole cluster is then re-superposed on all atoms with that correspondence, and
   steps 1-2 repeat until nothing changes (at most ``max_iterations``). The data order itself
   is refined the same way as one more start, so RMSD_17 <= the plain aligned RMSD always.

Reported (per cluster):
- ``rmsd_17``: sqrt(mean over all N atoms of |R q_pi(i) + t - p_i|^2), the best proper rigid
  superposition with the found correspondence ``pi``.
- ``per_molecule_rmsd``: the same restricted to each true molecule's atoms (no refit).
- ``matched``: a molecule counts as matched when its per-molecule RMSD is at most
  ``distance_tolerance`` times the distance from its true centroid to the nearest other true
  centroid (default 0.2, i.e. COMPACK's default 20 % distance tolerance applied to the
  molecule's own neighbour distance; about 1 Å for typical 5 Å neighbour distances).
  ``n_matched`` counts them.
- ``rmsd_matched``: RMSD over the atoms of matched molecules after re-superposing on them only
  (NaN when none is matched), which is what COMPACK reports next to "n/17 matched".
- ``assignment``, ``atom_permutation``, ``reflection`` and ``automorphisms_truncated``.
  ``reflection`` is the Kabsch flag of the final correspondence (an improper transform would fit
  it better); the search itself uses proper rotations only, so a mirror-image packing is not
  a match (it gets a large RMSD_17) and may end on a correspondence with the flag unset.

Atom labels: predicted molecule m is the prediction of true molecule m, its atoms listed in the
same order as true molecule m's (as a model that moves the atoms of the data produces); the
molecule's graph, and so its symmetry, is taken from the true structure.

Non-finite predictions are not matched: their values are NaN, ``n_matched`` is 0 and ``valid``
is False. Data-dependent combinatorics run per cluster (Hungarian on CPU via SciPy); tensor work
follows the device of the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from kflow_mol.metrics.elements import covalent_radii
from kflow_mol.metrics.packing import _check_pair, _cluster_slices, molecule_centroids
from kflow_mol.metrics.rmsd import RigidAlignment, kabsch
from kflow_mol.metrics.symmetry import (
    RDKIT_BOND_FACTOR,
    ClusterTopology,
    SymmetryCache,
    cluster_topology,
    intra_molecular_pairs,
)

_MISMATCH_COST = 1e12


@dataclass
class AssemblyRMSD:
    """Permutation-invariant RMSD of clusters; leading (B,) dim dropped for a single cluster.

    Attributes:
        rmsd_17: (B,) RMSD over all atoms after the optimal correspondence and superposition.
        rmsd_matched: (B,) RMSD over matched molecules, refit on them; NaN if none.
        n_matched: (B,) long, molecules within tolerance.
        matched: (B, M) bool, by true molecule.
        per_molecule_rmsd: (B, M), by true molecule.
        assignment: (B, M) long, predicted molecule assigned to each true molecule.
        atom_permutation: (B, N) long, predicted atom matched to each true atom.
        reflection: (B,) bool, an improper superposition would fit better.
        automorphisms_truncated: (B,) bool, symmetry enumeration hit its cap.
        valid: (B,) bool, inputs were finite.
    """

    rmsd_17: Tensor
    rmsd_matched: Tensor
    n_matched: Tensor
    matched: Tensor
    per_molecule_rmsd: Tensor
    assignment: Tensor
    atom_permutation: Tensor
    reflection: Tensor
    automorphisms_truncated: Tensor
    valid: Tensor


def _hungarian(cost: Tensor) -> Tensor:
    """Row-wise assignment for a batch of square costs: (S, M, M) -> (S, M) column per row.

    Where every row of a matrix has one strictly smallest cost and these minima fall in distinct
    columns, taking them is the unique optimal assignment (any other pays more in some row), so
    only the other matrices go to SciPy's ``linear_sum_assignment`` (on CPU, in float64).
    """
    num = cost.shape[-1]
    if num < 2:
        return torch.zeros(cost.shape[:-1], dtype=torch.long, device=cost.device)
    smallest = cost.topk(2, dim=-1, largest=False)  # values, indices: (S, M, 2)
    assignment = smallest.indices[..., 0]
    clear = (smallest.values[..., 0] < smallest.values[..., 1]).all(-1)
    clear &= (assignment.sort(-1).values == torch.arange(num, device=cost.device)).all(-1)
    hard = torch.nonzero(~clear).flatten()
    if len(hard):
        cost_np = cost[hard].detach().cpu().double().numpy()
        solved = np.stack([linear_sum_assignment(c)[1] for c in cost_np])
        assignment[hard] = torch.from_numpy(solved).to(cost.device)
    return assignment


def _centroid_cost(c_true: Tensor, c_pred_aligned: Tensor, same_group: Tensor) -> Tensor:
    cost = (c_true.unsqueeze(-2) - c_pred_aligned.unsqueeze(-3)).square().sum(-1)
    return torch.where(same_group, cost, torch.full_like(cost, _MISMATCH_COST))


@dataclass
class _Clusters:
    """The fixed inputs of a refinement: one cluster or R rows of clusters.

    Attributes:
        pos_true: ([R,] N, 3) true positions.
        pos_pred: ([R,] N, 3) predicted positions.
        c_true: ([R,] M, 3) true molecule centroids.
        c_pred: ([R,] M, 3) predicted molecule centroids.
        counts: (M,) atoms per molecule.
        same_group: (M, M) bool, which molecules may be matched.
        topology: the shared cluster topology.
        max_iterations: cap on rounds.
    """

    pos_true: Tensor
    pos_pred: Tensor
    c_true: Tensor
    c_pred: Tensor
    counts: Tensor
    same_group: Tensor
    topology: ClusterTopology
    max_iterations: int

    def rows(self, index: Tensor) -> _Clusters:
        """The rows ``index`` (K,) of batched clusters."""
        names = ("pos_true", "pos_pred", "c_true", "c_pred")
        return replace(self, **{name: getattr(self, name).index_select(0, index) for name in names})


def _prepare(
    pos_true: Tensor, pos_pred: Tensor, mol_index: Tensor, topology: ClusterTopology, max_iterations: int
) -> tuple[_Clusters, RigidAlignment, Tensor]:
    """Centroids and starts of B clusters sharing a topology: (B, N, 3) positions each.

    Returns:
        The clusters, the all-atom superposition in the data order (batch shape (B,)) and the
        (B, 6, 3, 3) starting rotations of the molecule assignment (centroid Kabsch, data-order
        Kabsch, four principal-axes frames).
    """
    c_true, c_pred = molecule_centroids(pos_true, mol_index), molecule_centroids(pos_pred, mol_index)
    group = topology.group.to(pos_true.device)
    counts = torch.bincount(mol_index, minlength=c_true.shape[1]).to(pos_true.dtype)
    same_group = group[:, None] == group[None, :]
    data_order = kabsch(pos_true, pos_pred)
    rotations = torch.cat(
        [
            kabsch(c_true, c_pred, counts).rotation[:, None],
            data_order.rotation[:, None],
            _principal_axes_starts_batch(c_true, c_pred),
        ],
        dim=1,
    )
    clusters = _Clusters(pos_true, pos_pred, c_true, c_pred, counts, same_group, topology, max_iterations)
    return clusters, data_order, rotations


@dataclass
class _Correspondence:
    """A correspondence and its fit: one cluster (``msd`` a float) or R rows (``msd`` (R,)).

    Attributes:
        msd: mean squared deviation over all atoms after ``alignment``.
        assignment: ([R,] M) predicted molecule of each true molecule.
        permutation: ([R,] N) predicted atom of each true atom.
        alignment: superposition of batch shape ([R]).
    """

    msd: float | Tensor
    assignment: Tensor
    permutation: Tensor
    alignment: RigidAlignment

    def keep_better(self, rows: Tensor, candidate: _Correspondence) -> None:
        """Rows ``rows`` (K,) of this record take the K candidate rows that are strictly better."""
        better = candidate.msd < self.msd[rows]
        target = rows[better]
        self.msd[target] = candidate.msd[better]
        self.assignment[target] = candidate.assignment[better]
        self.permutation[target] = candidate.permutation[better]
        for name in ("rotation", "translation", "reflection"):
            getattr(self.alignment, name)[target] = getattr(candidate.alignment, name)[better]


def _superpose(pos_true: Tensor, moved: Tensor) -> tuple[RigidAlignment, Tensor]:
    """Kabsch of ``moved`` onto ``pos_true`` (both (..., N, 3)) and the msd (...,) after it."""
    alignment = kabsch(pos_true, moved)
    return alignment, (alignment.apply(moved) - pos_true).square().sum(-1).mean(-1)


def _rows(alignment: RigidAlignment, rows: Tensor) -> RigidAlignment:
    """The alignments of ``rows`` (K,) of a batch of shape (R,)."""
    return RigidAlignment(alignment.rotation[rows], alignment.translation[rows], alignment.reflection[rows])


def _gather_points(points: Tensor, index: Tensor) -> Tensor:
    """Per-row point gather: (R, N, 3) points, (R, K) indices -> (R, K, 3).

    One ``index_select`` on the flattened points (advanced indexing with a row index was the
    largest single cost of the vectorised path).
    """
    rows, num_points = points.shape[:2]
    flat = index + num_points * torch.arange(rows, device=index.device).unsqueeze(1)
    return points.reshape(-1, 3).index_select(0, flat.flatten()).view(*index.shape, 3)


def _automorphism_incidence(automorphisms: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct (atom, image) pairs of a compound's automorphisms and which automorphism uses them.

    Args:
        automorphisms: (S, T) long, image of every atom under every automorphism.

    Returns:
        ``pairs`` (U,) long, flat indices ``t * T + image`` into a (T, T) matrix, and
        ``incidence`` (U, S) float, 1 where automorphism s maps atom t to that image. The score
        ``sum_t cross[t, aut_s(t)]`` of every automorphism is then ``cross.flatten()[pairs] @
        incidence``: U is the sum of the atoms' orbit sizes (54 for hexylbenzene's 384
        automorphisms of 30 atoms), not S * T.
    """
    if automorphisms not in _INCIDENCE:
        num_auts, size = automorphisms.shape
        flat = (automorphisms + size * torch.arange(size, device=automorphisms.device)).flatten()
        pairs, inverse = torch.unique(flat, return_inverse=True)
        incidence = torch.zeros(len(pairs), num_auts, device=automorphisms.device)
        incidence[inverse, torch.arange(num_auts, device=automorphisms.device).repeat_interleave(size)] = 1.0
        _INCIDENCE[automorphisms] = (pairs, incidence)
    return _INCIDENCE[automorphisms]


_INCIDENCE = WeakIdKeyDictionary()
"""Incidence of every automorphism table alive (held by a SymmetryCache), keyed by the tensor."""


def _best_automorphisms_rows(
    pos_true: Tensor, aligned_pred: Tensor, topology: ClusterTopology, assignment: Tensor
) -> Tensor:
    """Atom correspondence of R rows at once: (R, N, 3), (R, N, 3), (R, M) -> (R, N), each true
    atom's predicted atom under the best automorphism of its molecule.

    For fixed atom sets the squared deviation differs between automorphisms only through the
    cross term, so the best automorphism maximises sum_t x_t . y_aut(t) (taken about the true
    molecule's centroid, which changes no difference and keeps float32 exact enough); all copies
    of a compound are scored at once from their (T, T) cross matrices, as one matrix product over
    the distinct (atom, image) pairs (:func:`_automorphism_incidence`).
    """
    rows = pos_true.shape[0]
    permutation = torch.empty(pos_true.shape[:2], dtype=torch.long, device=pos_true.device)
    for compound in topology.compounds:
        copies, size = compound.atoms.shape
        pred_atoms = compound.atoms[topology.slot[assignment[:, compound.members]]]  # (R, C, T)
        true_points = pos_true.index_select(1, compound.atoms.flatten()).view(rows, copies, size, 3)
        centre = true_points.mean(2, keepdim=True)
        pred_points = _gather_points(aligned_pred, pred_atoms.flatten(1)).view(rows, copies, size, 3)
        cross = (true_points - centre) @ (pred_points - centre).transpose(-1, -2)  # (R, C, T, T)
        pairs, incidence = _automorphism_incidence(compound.automorphisms)
        score = cross.flatten(2).index_select(2, pairs) @ incidence.to(cross.dtype)  # (R, C, S)
        best = compound.automorphisms[score.argmax(-1)]  # (R, C, T)
        permutation[:, compound.atoms] = pred_atoms.gather(2, best)
    return permutation


def _refine_atoms_rows(clusters: _Clusters, assignment: Tensor, alignment: RigidAlignment) -> _Correspondence:
    """Alternate best automorphisms, all-atom Kabsch and centroid Hungarian; keep the best.

    R independent rows; each row stops when its assignment is a fixed point.

    Args:
        clusters: R rows (a cluster may appear in several, with different starts).
        assignment: (R, M) starting assignments.
        alignment: their superpositions, batch shape (R,).

    Returns:
        The best correspondence of every row (msd (R,)).
    """
    num_rows, device = clusters.pos_true.shape[0], clusters.pos_true.device
    best = _Correspondence(
        torch.full((num_rows,), float("inf"), dtype=clusters.pos_true.dtype, device=device),
        assignment.clone(),
        torch.zeros(clusters.pos_true.shape[:2], dtype=torch.long, device=device),
        RigidAlignment(*(t.clone() for t in vars(alignment).values())),
    )
    live, assignment, rows = torch.arange(num_rows, device=device), assignment.clone(), clusters
    for _ in range(clusters.max_iterations):
        aligned = alignment.apply(rows.pos_pred)
        permutation = _best_automorphisms_rows(rows.pos_true, aligned, rows.topology, assignment[live])
        alignment, msd = _superpose(rows.pos_true, _gather_points(rows.pos_pred, permutation))
        best.keep_better(live, _Correspondence(msd, assignment[live], permutation, alignment))
        new = _hungarian(_centroid_cost(rows.c_true, alignment.apply(rows.c_pred), rows.same_group))
        changed = torch.nonzero((new != assignment[live]).any(-1)).flatten()
        if not len(changed):
            break
        live, alignment, rows = live[changed], _rows(alignment, changed), rows.rows(changed)
        assignment[live] = new[changed]
    return best


def _assign_molecules_rows(
    c_true: Tensor, c_pred: Tensor, weights: Tensor, same_group: Tensor, rotations: Tensor, max_iterations: int
) -> tuple[Tensor, RigidAlignment, Tensor]:
    """Iterate Hungarian assignment and centroid Kabsch from several starting rotations.

    Every (cluster, start) row stops when its assignment is a fixed point.

    Args:
        c_true: (B, M, 3) true centroids.
        c_pred: (B, M, 3) predicted centroids.
        weights: (M,) atoms per molecule.
        same_group: (M, M) bool, which molecules may be matched.
        rotations: (B, S, 3, 3) starting rotations.
        max_iterations: cap on rounds.

    Returns:
        assignments (B, S, M) (true molecule j <- predicted molecule assignment[j]), their
        atom-weighted centroid superpositions (batch shape (B, S)), and (B, S) weighted
        centroid mean squared deviations: a lower bound of the atom mean squared deviation of
        that assignment.
    """
    clusters, starts = rotations.shape[:2]
    c_true_rows = c_true.repeat_interleave(starts, 0)  # (B*S, M, 3)
    c_pred_rows = c_pred.repeat_interleave(starts, 0)
    rotations = rotations.reshape(-1, 3, 3)
    translation = c_true_rows.mean(1) - (rotations @ c_pred_rows.mean(1).unsqueeze(-1)).squeeze(-1)
    alignment = RigidAlignment(
        rotations, translation, torch.zeros(len(rotations), dtype=torch.bool, device=rotations.device)
    )
    assignment = None
    live = torch.arange(len(rotations), device=rotations.device)
    for _ in range(max_iterations):
        new = _hungarian(_centroid_cost(c_true_rows[live], _rows(alignment, live).apply(c_pred_rows[live]), same_group))
        if assignment is None:
            assignment = new
        else:
            changed = (new != assignment[live]).any(-1)
            live, new = live[changed], new[changed]
            if not len(live):
                break
            assignment[live] = new
        aligned = kabsch(c_true_rows[live], _gather_points(c_pred_rows[live], assignment[live]), weights)
        alignment.rotation[live], alignment.translation[live] = aligned.rotation, aligned.translation
        alignment.reflection[live] = aligned.reflection
    squared = (alignment.apply(_gather_points(c_pred_rows, assignment)) - c_true_rows).square().sum(-1)
    bound = (squared * weights).sum(-1) / weights.sum()
    mismatched = (~same_group[torch.arange(c_true.shape[1], device=c_true.device), assignment]).sum(-1)
    bound = bound + _MISMATCH_COST * mismatched.to(bound.dtype)
    shape = (clusters, starts)
    return (
        assignment.view(*shape, -1),
        RigidAlignment(
            alignment.rotation.view(*shape, 3, 3),
            alignment.translation.view(*shape, 3),
            alignment.reflection.view(shape),
        ),
        bound.view(shape),
    )


def _principal_axes_starts_batch(c_true: Tensor, c_pred: Tensor) -> Tensor:
    """Four proper rotations aligning the principal axes of (B, M, 3) clouds: (B, 4, 3, 3)."""

    def axes(points: Tensor) -> Tensor:
        centred = points - points.mean(-2, keepdim=True)
        return torch.linalg.eigh(centred.transpose(-1, -2) @ centred).eigenvectors

    e_true, e_pred = axes(c_true), axes(c_pred)
    signs = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=c_true.dtype, device=c_true.device)
    flip = (torch.linalg.det(e_true) * torch.linalg.det(e_pred) < 0).to(c_true.dtype)
    signs = signs * (1 - 2 * flip)[:, None, None]  # (B, 4, 3)
    return e_true.unsqueeze(1) @ torch.diag_embed(signs) @ e_pred.transpose(-1, -2).unsqueeze(1)


def _start_queues(assignments: Tensor, bounds: Tensor) -> list[list[int]]:
    """Per cluster, its starts in the order of their bounds, one per distinct assignment.

    Equal assignments share their superposition and bound, so only the first is refined.
    """
    order = torch.argsort(bounds, dim=1, stable=True).tolist()
    keys = assignments.tolist()
    queues = []
    for cluster_order, cluster_keys in zip(order, keys):
        seen, queue = set(), []
        for start in cluster_order:
            key = tuple(cluster_keys[start])
            if key not in seen:
                seen.add(key)
                queue.append(start)
        queues.append(queue)
    return queues


def _next_starts(queues: list[list[int]], bounds: list[list[float]], best_msd: list[float]) -> list[tuple[int, int]]:
    """(cluster, start) of every cluster whose next start's bound is below its best msd.

    Bounds only grow along a queue, so a queue whose head is not below is emptied.
    """
    picks = []
    for cluster, queue in enumerate(queues):
        if queue and bounds[cluster][queue[0]] >= best_msd[cluster]:
            queue.clear()
        if queue:
            picks.append((cluster, queue.pop(0)))
    return picks


def _rmsd17_group(
    pos_true: Tensor,
    pos_pred: Tensor,
    mol_index: Tensor,
    topology: ClusterTopology,
    distance_tolerance: float,
    max_iterations: int,
) -> list[dict[str, Tensor]]:
    """RMSD_17 of B clusters sharing one topology: (B, N, 3) each.

    The data order of every cluster is refined (so RMSD_17 never exceeds the plain aligned
    RMSD); crystal clusters are nearly symmetric, so several starts can fit the centroids equally
    well, and each distinct one is refined on all atoms in the order of its centroid bound while
    that bound is below the cluster's best atom deviation; only strict improvements are kept.
    The tensor work of all clusters runs together (Hungarian assignments stay one SciPy call per
    cluster and start where the assignment is not obvious); the control flow is row by row, so
    the result is that of the per-cluster loop (``tests/mol/_reference_rmsd.py``).
    """
    clusters, data_order, rotations = _prepare(pos_true, pos_pred, mol_index, topology, max_iterations)
    assignments, alignments, bounds = _assign_molecules_rows(
        clusters.c_true, clusters.c_pred, clusters.counts, clusters.same_group, rotations, max_iterations
    )
    # Refine the data order of every cluster, then in rounds the next start of every cluster
    # that the sequential rule would try.
    num_molecules = clusters.c_true.shape[1]
    identity = torch.arange(num_molecules, device=pos_true.device).expand(pos_true.shape[0], -1)
    best = _refine_atoms_rows(clusters, identity, data_order)
    queues, bound_list = _start_queues(assignments, bounds), bounds.tolist()
    while picks := _next_starts(queues, bound_list, best.msd.tolist()):
        owner = torch.tensor([b for b, _ in picks], device=pos_true.device)
        start = torch.tensor([s for _, s in picks], device=pos_true.device)
        start_alignment = RigidAlignment(*(t[owner, start] for t in vars(alignments).values()))
        best.keep_better(owner, _refine_atoms_rows(clusters.rows(owner), assignments[owner, start], start_alignment))
    return _finish_rows(clusters, mol_index, best, distance_tolerance)


def _finish_rows(
    batch: _Clusters, mol_index: Tensor, best: _Correspondence, distance_tolerance: float
) -> list[dict[str, Tensor]]:
    """Per-cluster outputs of the chosen correspondences of B clusters.

    Args:
        batch: the B clusters.
        mol_index: (N,) molecule of each atom.
        best: their correspondences (batch shape (B,)).
        distance_tolerance: see :func:`rmsd17`.

    The matched-molecule refit runs together for clusters with the same matched set.
    """
    pos_true, pos_pred, c_true, counts = batch.pos_true, batch.pos_pred, batch.c_true, batch.counts
    clusters, num_molecules = pos_true.shape[0], c_true.shape[1]
    moved = _gather_points(pos_pred, best.permutation)  # (B, N, 3)
    squared = (best.alignment.apply(moved) - pos_true).square().sum(-1)  # (B, N)
    per_molecule = (squared.new_zeros(clusters, num_molecules).index_add_(1, mol_index, squared) / counts).sqrt()
    distance = torch.cdist(c_true, c_true)
    distance.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    matched = per_molecule <= distance_tolerance * distance.min(-1).values  # (B, M)
    rmsd_matched = squared.new_full((clusters,), float("nan"))
    patterns: dict[tuple, list[int]] = {}
    for b, pattern in enumerate(matched.tolist()):
        if any(pattern):
            patterns.setdefault(tuple(pattern), []).append(b)
    for pattern, members in patterns.items():
        atoms = torch.nonzero(torch.tensor(pattern, device=pos_true.device)[mol_index]).flatten()
        rows = torch.tensor(members, device=pos_true.device)
        true_m = pos_true.index_select(0, rows).index_select(1, atoms)
        moved_m = moved.index_select(0, rows).index_select(1, atoms)
        rmsd_matched[rows] = _superpose(true_m, moved_m)[1].sqrt()
    rmsd_17 = squared.mean(-1).sqrt()
    return [
        {
            "rmsd_17": rmsd_17[b],
            "rmsd_matched": rmsd_matched[b],
            "n_matched": matched[b].sum(),
            "matched": matched[b],
            "per_molecule_rmsd": per_molecule[b],
            "assignment": best.assignment[b],
            "atom_permutation": best.permutation[b],
            "reflection": best.alignment.reflection[b],
        }
        for b in range(clusters)
    ]


def _invalid_single(pos_true: Tensor, num_molecules: int) -> dict[str, Tensor]:
    nan = torch.tensor(float("nan"), dtype=pos_true.dtype, device=pos_true.device)
    device = pos_true.device
    return {
        "rmsd_17": nan,
        "rmsd_matched": nan,
        "n_matched": torch.tensor(0, device=device),
        "matched": torch.zeros(num_molecules, dtype=torch.bool, device=device),
        "per_molecule_rmsd": nan.expand(num_molecules).clone(),
        "assignment": torch.full((num_molecules,), -1, device=device),
        "atom_permutation": torch.full((pos_true.shape[0],), -1, device=device),
        "reflection": torch.tensor(False, device=device),
    }


def _bonded_masks(positions: Tensor, z: Tensor, pairs: Tensor, bond_factor: float) -> Tensor:
    """:func:`~kflow_mol.metrics.symmetry.bonded_pairs` of (B, N, 3) positions: (B, P) bool.

    Same test (distance < bond_factor * (r_i + r_j)); gathered with ``index_select`` in
    blocks of 16 clusters, which keeps the (16, P, 3) differences in cache (3-4x faster on CPU).
    """
    radii = covalent_radii(z, dtype=positions.dtype)
    limit = bond_factor * (radii[pairs[:, 0]] + radii[pairs[:, 1]])
    first, second = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
    return torch.cat(
        [
            (block.index_select(1, first) - block.index_select(1, second)).norm(dim=-1) < limit
            for block in positions.split(16)
        ]
    )


class _TopologyFinder:
    """Topology of each cluster, rebuilt only when its bond pattern or labels change."""

    def __init__(self, cache: SymmetryCache, bond_factor: float):
        self.cache = cache
        self.bond_factor = bond_factor
        self._known: dict[tuple, ClusterTopology] = {}

    def __call__(self, pos_true: Tensor, z: Tensor, mol_index: Tensor) -> list[ClusterTopology]:
        """Topologies of a batch (B, N, 3) sharing z (N,) and mol_index (N,)."""
        z_cpu, mol_cpu = torch.as_tensor(z).long().cpu(), mol_index.long().cpu()
        pairs = intra_molecular_pairs(mol_cpu)
        bonded = _bonded_masks(pos_true.detach().cpu(), z_cpu, pairs, self.bond_factor)
        labels = (z_cpu.numpy().tobytes(), mol_cpu.numpy().tobytes())
        out = []
        for mask in bonded:
            key = (*labels, mask.numpy().tobytes())
            if key not in self._known:
                self._known[key] = cluster_topology(z_cpu, mol_cpu, pairs[mask], self.cache, pos_true.device)
            out.append(self._known[key])
        return out


_CHUNK = 64
"""Clusters refined together by the vectorised path (bounds the memory of the candidate rows)."""


def _check_batch(pos_true: Tensor, pos_pred: Tensor, z: Tensor, mol_index: Tensor, topologies: _TopologyFinder):
    """What every evaluation of a batch (B, N, 3) needs first.

    Returns:
        ``(mol_index (N,) long, num_molecules, valid (B,) list of bool (finite inputs),
        topologies (B,) list)``.
    """
    mol_index = torch.as_tensor(mol_index, device=pos_true.device).long()
    num_molecules = int(molecule_centroids(pos_true[0], mol_index).shape[0])
    valid = (torch.isfinite(pos_true).flatten(1).all(1) & torch.isfinite(pos_pred).flatten(1).all(1)).tolist()
    return mol_index, num_molecules, valid, topologies(pos_true, z, mol_index)


def _flag(result: dict[str, Tensor], ok: bool, topology: ClusterTopology, device) -> dict[str, Tensor]:
    """Add the ``automorphisms_truncated`` and ``valid`` flags to one cluster's result."""
    result["automorphisms_truncated"] = torch.tensor(ok and topology.truncated, device=device)
    result["valid"] = torch.tensor(ok, device=device)
    return result


@torch.no_grad()
def _evaluate(
    pos_true: Tensor,
    pos_pred: Tensor,
    z: Tensor,
    mol_index: Tensor,
    topologies: _TopologyFinder,
    distance_tolerance: float,
    max_iterations: int,
) -> list[dict[str, Tensor]]:
    """Evaluate a batch (B, N, 3) of clusters sharing z and mol_index.

    The clusters that share a topology run together (:func:`_rmsd17_group`, in chunks of
    :data:`_CHUNK`); clusters with non-finite inputs get :func:`_invalid_single`.
    """
    mol_index, num_molecules, valid, cluster_topologies = _check_batch(pos_true, pos_pred, z, mol_index, topologies)
    results: list[dict[str, Tensor] | None] = [None] * len(valid)
    groups: dict[int, list[int]] = {}
    for index, (ok, topology) in enumerate(zip(valid, cluster_topologies)):
        if ok:
            groups.setdefault(id(topology), []).append(index)
    for members in groups.values():
        topology = cluster_topologies[members[0]]
        for first in range(0, len(members), _CHUNK):
            chunk = torch.tensor(members[first : first + _CHUNK], device=pos_true.device)
            outs = _rmsd17_group(
                pos_true[chunk], pos_pred[chunk], mol_index, topology, distance_tolerance, max_iterations
            )
            for index, out in zip(chunk.tolist(), outs):
                results[index] = out
    for index, (cluster_true, ok, topology) in enumerate(zip(pos_true, valid, cluster_topologies)):
        result = results[index] if ok else _invalid_single(cluster_true, num_molecules)
        results[index] = _flag(result, ok, topology, pos_true.device)
    return results


def rmsd17(
    pos_true: Tensor,
    pos_pred: Tensor,
    z: Tensor,
    mol_index: Tensor,
    *,
    distance_tolerance: float = 0.2,
    max_iterations: int = 10,
    max_automorphisms: int = 4096,
    bond_factor: float = RDKIT_BOND_FACTOR,
    cache: SymmetryCache | None = None,
) -> AssemblyRMSD:
    """Permutation- and symmetry-invariant cluster RMSD (see module docstring).

    Args:
        pos_true: (N, 3) or (B, N, 3) true positions (bonds are perceived from them).
        pos_pred: same shape, predicted positions.
        z: (N,) atomic numbers, shared by the batch.
        mol_index: (N,) molecule index 0..M-1, shared by the batch.
        distance_tolerance: matched if per-molecule RMSD <= tolerance * nearest-neighbour
            centroid distance.
        max_iterations: cap on assignment / superposition rounds.
        max_automorphisms: cap on graph automorphisms per molecule.
        bond_factor: bond perception factor on the sum of covalent radii.
        cache: reuse a SymmetryCache across calls (RDKit work is done once per graph).

    The clusters of a batch are processed together (about 6x faster on CPU than the original
    per-cluster loop, which is kept as the tests' reference in ``tests/mol/_reference_rmsd.py``
    and gives the same result).

    Returns:
        AssemblyRMSD (no batch dim for (N, 3) input).
    """
    pos_true, pos_pred = _check_pair(pos_true, pos_pred)
    unbatched = pos_true.dim() == 2
    if unbatched:
        pos_true, pos_pred = pos_true[None], pos_pred[None]
    topologies = _TopologyFinder(cache or SymmetryCache(max_automorphisms), bond_factor)
    results = _evaluate(pos_true, pos_pred, z, mol_index, topologies, distance_tolerance, max_iterations)
    return _stack(results, unbatched)


def rmsd17_batch(
    pos_true: Tensor, pos_pred: Tensor, z: Tensor, mol_index: Tensor, batch: Tensor, **options
) -> list[AssemblyRMSD]:
    """RMSD_17 for a PyG batch of clusters of different sizes.

    Args:
        pos_true: (A, 3) true positions of all clusters.
        pos_pred: (A, 3) predicted positions.
        z: (A,) atomic numbers.
        mol_index: (A,) molecule index within each cluster.
        batch: (A,) sorted cluster index.
        **options: keyword options of :func:`rmsd17`; one ``SymmetryCache`` serves every cluster.

    Returns:
        One unbatched AssemblyRMSD per cluster (fields differ in size between clusters).
    """
    pos_true, pos_pred = _check_pair(pos_true, pos_pred)
    offsets, sizes = _cluster_slices(torch.as_tensor(batch, device=pos_true.device), pos_true.shape[0])
    if options.get("cache") is None:
        options["cache"] = SymmetryCache(options.get("max_automorphisms", 4096))
    z, mol_index = torch.as_tensor(z), torch.as_tensor(mol_index)
    parts = [slice(start, start + size) for start, size in zip(offsets.tolist(), sizes.tolist())]
    return [rmsd17(pos_true[part], pos_pred[part], z[part], mol_index[part], **options) for part in parts]


def _stack(results: list[dict[str, Tensor]], unbatched: bool) -> AssemblyRMSD:
    fields = {name: torch.stack([r[name] for r in results]) for name in results[0]}
    if unbatched:
        fields = {name: value[0] for name, value in fields.items()}
    return AssemblyRMSD(**fields)
