"""The original per-cluster RMSD_17 loop: the reference of the batched library path.

:func:`kflow_mol.metrics.rmsd17` runs the clusters of a batch together; this module keeps the
sequential algorithm it replaced, one cluster at a time, built from the same preparation,
molecule assignment and final outputs (batches of one), with the original atom refinement and
choice of starts. ``tests/mol/test_metrics_assembly_rmsd.py`` checks the two agree field by
field, and ``scripts/bench_metrics.py --reference`` times it. Importable from the tests of
``tests/mol`` (pytest puts the folder on ``sys.path``).
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch
from torch import Tensor

from kflow_mol.metrics import assembly_rmsd as lib
from kflow_mol.metrics.rmsd import RigidAlignment
from kflow_mol.metrics.symmetry import ClusterTopology, SymmetryCache


@torch.no_grad()
def rmsd17_loop(pos_true: Tensor, pos_pred: Tensor, z: Tensor, mol_index: Tensor, **options) -> lib.AssemblyRMSD:
    """:func:`kflow_mol.metrics.rmsd17` (same arguments, keyword options and defaults, same result),
    one cluster at a time."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(lib.rmsd17).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"rmsd17_loop() got unexpected keyword arguments {unknown}")
    settings = {**defaults, **options}
    pos_true, pos_pred = lib._check_pair(pos_true, pos_pred)
    unbatched = pos_true.dim() == 2
    if unbatched:
        pos_true, pos_pred = pos_true[None], pos_pred[None]
    cache = settings["cache"] or SymmetryCache(settings["max_automorphisms"])
    topologies = lib._TopologyFinder(cache, settings["bond_factor"])
    mol_index, num_molecules, valid, cluster_topologies = lib._check_batch(pos_true, pos_pred, z, mol_index, topologies)
    refinement = (settings["distance_tolerance"], settings["max_iterations"])
    results = []
    for cluster_true, cluster_pred, ok, topology in zip(pos_true, pos_pred, valid, cluster_topologies):
        if ok:
            result = _single(cluster_true, cluster_pred, mol_index, topology, refinement)
        else:
            result = lib._invalid_single(cluster_true, num_molecules)
        results.append(lib._flag(result, ok, topology, pos_true.device))
    return lib._stack(results, unbatched)


def _single(
    pos_true: Tensor, pos_pred: Tensor, mol_index: Tensor, topology: ClusterTopology, options: tuple[float, int]
) -> dict[str, Tensor]:
    """RMSD_17 of one cluster (N, 3); ``options`` is ``(distance_tolerance, max_iterations)``."""
    distance_tolerance, max_iterations = options
    batch, data_order, rotations = lib._prepare(pos_true[None], pos_pred[None], mol_index, topology, max_iterations)
    cluster = _unbatched(batch)
    assignments, alignments, bounds = lib._assign_molecules_rows(
        batch.c_true, batch.c_pred, batch.counts, batch.same_group, rotations, max_iterations
    )
    assignments, alignments, bounds = assignments[0], lib._rows(alignments, 0), bounds[0]
    # The data order is always refined, so RMSD_17 never exceeds the plain aligned RMSD.
    identity = torch.arange(cluster.c_true.shape[0], device=pos_true.device)
    best = _refine_atoms(cluster, identity, lib._rows(data_order, 0))
    # Starts in the order of their centroid bound; skip those whose bound already exceeds the best.
    tried = set()
    for start in torch.argsort(bounds).tolist():
        key = tuple(assignments[start].tolist())
        if key in tried or bounds[start].item() >= best.msd:
            continue
        tried.add(key)
        candidate = _refine_atoms(cluster, assignments[start], lib._rows(alignments, start))
        if candidate.msd < best.msd:
            best = candidate
    batched = lib._Correspondence(
        torch.tensor([best.msd]),
        best.assignment[None],
        best.permutation[None],
        RigidAlignment(*(t[None] for t in vars(best.alignment).values())),
    )
    return lib._finish_rows(batch, mol_index, batched, distance_tolerance)[0]


def _unbatched(clusters: lib._Clusters) -> lib._Clusters:
    """The one cluster of a batch of one, without the batch dimension."""
    names = ("pos_true", "pos_pred", "c_true", "c_pred")
    return replace(clusters, **{name: getattr(clusters, name)[0] for name in names})


def _refine_atoms(cluster: lib._Clusters, assignment: Tensor, alignment: RigidAlignment) -> lib._Correspondence:
    """Alternate best automorphisms, all-atom Kabsch and centroid Hungarian on one cluster; keep the best.

    Args:
        cluster: one cluster (unbatched).
        assignment: (M,) starting molecule assignment.
        alignment: its superposition.
    """
    best = None
    for _ in range(cluster.max_iterations):
        aligned = alignment.apply(cluster.pos_pred)
        permutation = _best_automorphisms(cluster.pos_true, aligned, cluster.topology, assignment)
        alignment, msd = lib._superpose(cluster.pos_true, cluster.pos_pred[permutation])
        msd = msd.item()
        if best is None or msd < best.msd:
            best = lib._Correspondence(msd, assignment, permutation, alignment)
        cost = lib._centroid_cost(cluster.c_true, alignment.apply(cluster.c_pred), cluster.same_group)
        new_assignment = lib._hungarian(cost[None])[0]
        if torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
    return best


def _best_automorphisms(
    pos_true: Tensor, aligned_pred: Tensor, topology: ClusterTopology, assignment: Tensor
) -> Tensor:
    """Atom correspondence (N,) of one cluster: each true atom's predicted atom under the best
    automorphism (a gather of all S * T terms of the (T, T) cross matrices)."""
    permutation = torch.empty(pos_true.shape[0], dtype=torch.long, device=pos_true.device)
    for compound in topology.compounds:
        true_atoms = compound.atoms
        pred_atoms = compound.atoms[topology.slot[assignment[compound.members]]]
        true_points = pos_true[true_atoms]
        centre = true_points.mean(1, keepdim=True)
        cross = (true_points - centre) @ (aligned_pred[pred_atoms] - centre).transpose(-1, -2)
        num_auts, size = compound.automorphisms.shape
        flat = (compound.automorphisms + size * torch.arange(size, device=cross.device)).flatten()
        score = cross.flatten(1).index_select(1, flat).view(-1, num_auts, size).sum(-1)
        best = compound.automorphisms[score.argmax(-1)]
        permutation[true_atoms] = pred_atoms.gather(1, best)
    return permutation
