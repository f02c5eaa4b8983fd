"""Clusters as torch-geometric data: the rigid-body record, its file format, and loading.

Each cluster is an :class:`AssemblyData` with (A atoms, M molecules)::

    z (A,) long, mol_index (A,) long, num_mols int, mol_batch (M,) long
    pos_start, pos_target, body, pos (A, 3) float32
    rot_start, rot_target, rot_start_to_target (M, 3, 3) float32
    trans_start, trans_target, trans_start_to_target (M, 3) float32
    cluster_id, crystal_id, formula, source, start_scheme (str), synthetic (bool)

with ``pos_X[a] = rot_X[m] @ body[a] + trans_X[m]`` for atom a of molecule m, and both
states shifted by the centroid of the start state. Batching offsets ``mol_index`` by
``num_mols`` and ``mol_batch`` by one, so per-molecule tensors can be indexed with the
batched ``mol_index`` and reduced with ``mol_batch``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from kflow_mol.data import cod_cluster17 as csv_layout
from kflow_mol.data.clusters import Cluster, body_frame
from kflow_mol.data.crystals import CrystalRejected, hill_formula
from kflow_mol.data.sources import SOURCE_TAGS
from kflow_mol.data.splits import read_splits, split_ids
from kflow_mol.data.start_states import StartScheme, draw_start_state, start_rng
from kflow_mol.data.store import (
    META_FIELDS,
    PER_ATOM,
    PER_MOLECULE,
    STORE_NAME,
    ClusterStore,
    cluster_block,
    write_store,
)

FORMAT_VERSION = 1  # part of the cache key: unchanged by the container (old caches migrate)
LEGACY_NAME = "clusters.pt"
CLUSTER_ID_PATTERN = re.compile(r"^(.*)_r\d+_c\d+$")  # f"{crystal_id}_r{repeat}_c{center}"
RIGID_TOLERANCE = 1e-3  # Å, RMSD allowed when fitting a start molecule read from CSV


class AssemblyData(Data):
    """One cluster; batching keeps ``mol_index`` global and ``mol_batch`` per graph."""

    def __inc__(self, key, value, *args, **kwargs):
        if key == "mol_index":
            return self.num_mols
        if key == "mol_batch":
            return 1
        return super().__inc__(key, value, *args, **kwargs)


def collate_clusters(clusters: list[AssemblyData]) -> Batch:
    """Batch clusters (global ``mol_index``, per-molecule ``mol_batch``); a ``collate_fn``."""
    return Batch.from_data_list(clusters)


# --------------------------------------------------------------------------- one cluster


def rigid_cluster_data(
    numbers: np.ndarray,
    body: np.ndarray,
    rot_start: np.ndarray,
    trans_start: np.ndarray,
    rot_target: np.ndarray,
    trans_target: np.ndarray,
    meta: dict,
) -> AssemblyData:
    """Assemble the record of one cluster from per-molecule rigid poses.

    Args:
        numbers: (M, n) atomic numbers.
        body: (M, n, 3) body-frame coordinates.
        rot_start: (M, 3, 3) start rotations.
        trans_start: (M, 3) start translations.
        rot_target: (M, 3, 3) crystal rotations.
        trans_target: (M, 3) crystal translations.
        meta: the string/bool fields of :data:`META_FIELDS`.

    Returns:
        The cluster, both states shifted by the start-state centroid.
    """
    num_mols, atoms_per_mol = numbers.shape
    pos_start = np.einsum("mij,mnj->mni", rot_start, body) + trans_start[:, None]
    shift = pos_start.reshape(-1, 3).mean(axis=0)
    trans_start = trans_start - shift
    trans_target = trans_target - shift
    pos_start = pos_start - shift
    pos_target = np.einsum("mij,mnj->mni", rot_target, body) + trans_target[:, None]
    rot_start_to_target = rot_target @ rot_start.transpose(0, 2, 1)
    trans_start_to_target = trans_target - np.einsum("mij,mj->mi", rot_start_to_target, trans_start)

    def f32(array):
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32)

    pos_start_t = f32(pos_start.reshape(-1, 3))
    return AssemblyData(
        z=torch.as_tensor(numbers.reshape(-1), dtype=torch.long),
        mol_index=torch.arange(num_mols).repeat_interleave(atoms_per_mol),
        num_mols=num_mols,
        mol_batch=torch.zeros(num_mols, dtype=torch.long),
        pos=pos_start_t,
        pos_start=pos_start_t,
        pos_target=f32(pos_target.reshape(-1, 3)),
        body=f32(body.reshape(-1, 3)),
        rot_start=f32(rot_start),
        trans_start=f32(trans_start),
        rot_target=f32(rot_target),
        trans_target=f32(trans_target),
        rot_start_to_target=f32(rot_start_to_target),
        trans_start_to_target=f32(trans_start_to_target),
        **{key: meta[key] for key in META_FIELDS},
    )


def cluster_body_frames(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-molecule principal-axis frames.

    Args:
        positions: (M, n, 3) coordinates.

    Returns:
        ``(rotations (M, 3, 3), centroids (M, 3), body (M, n, 3))``.
    """
    frames = [body_frame(p) for p in positions]
    return tuple(np.stack(parts) for parts in zip(*frames))


def crystal_cluster_data(cluster: Cluster, scheme: StartScheme, seed: int, repeat: int, meta: dict) -> AssemblyData:
    """A crystal cluster with a freshly drawn start state (seeded by crystal, repeat, centre)."""
    rot_target, trans_target, body = cluster_body_frames(cluster.positions)
    cluster_id = f"{cluster.crystal_id}_r{repeat}_c{cluster.center}"
    rng = start_rng(seed, cluster.crystal_id, repeat, cluster.center)
    rot_start, trans_start = draw_start_state(body, rot_target, trans_target, scheme, rng, cluster_id)
    meta = {**meta, "cluster_id": cluster_id, "crystal_id": cluster.crystal_id, "start_scheme": scheme.name}
    return rigid_cluster_data(cluster.numbers, body, rot_start, trans_start, rot_target, trans_target, meta)


def fit_rotation(body: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Best proper rotation and translation with ``positions ≈ body @ R.T + t`` (Kabsch).

    Args:
        body: (n, 3) centred body-frame coordinates.
        positions: (n, 3) observed coordinates.

    Returns:
        ``(R (3, 3), t (3,), rmsd)``.
    """
    translation = positions.mean(axis=0)
    u, _, vt = np.linalg.svd(body.T @ (positions - translation))
    flip = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, flip]) @ u.T
    rmsd = float(np.sqrt(((body @ rotation.T + translation - positions) ** 2).sum(-1).mean()))
    return rotation, translation, rmsd


# ---------------------------------------------------------------------------- storage


def save_clusters(path: Path, clusters: Sequence[AssemblyData]) -> None:
    """Store clusters in one memory-mappable container (:mod:`kflow_mol.data.store`).

    Args:
        path: ``<folder>/clusters.safetensors`` (a ``.pt`` name is redirected there).
        clusters: the records, in order.
    """
    path = Path(path)
    if path.suffix == ".pt":
        path = path.with_name(STORE_NAME)
    write_store(path, [(cluster_block(clusters), None)])


def save_clusters_legacy(path: Path, clusters: list[AssemblyData]) -> None:
    """The former ``clusters.pt`` (one torch.save of concatenated tensors); kept for migration tests."""
    if not clusters:
        record = {"atom_ptr": torch.zeros(1, dtype=torch.long), "mol_ptr": torch.zeros(1, dtype=torch.long), "meta": []}
    else:
        record = {key: torch.cat([c[key] for c in clusters]) for key in PER_ATOM + PER_MOLECULE}
        record["atom_ptr"] = torch.tensor([0] + [c.num_nodes for c in clusters]).cumsum(0)
        record["mol_ptr"] = torch.tensor([0] + [c.num_mols for c in clusters]).cumsum(0)
        record["meta"] = [{key: c[key] for key in META_FIELDS} for c in clusters]
    record["format_version"] = FORMAT_VERSION
    tmp = Path(path).with_suffix(".tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)


def load_clusters_legacy(path: Path) -> list[AssemblyData]:
    """Every cluster of a former ``clusters.pt``, all in memory (the eager reader)."""
    record = torch.load(path, weights_only=True)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: cluster file format {record.get('format_version')} != {FORMAT_VERSION}; rebuild it")
    atom_ptr, mol_ptr = record["atom_ptr"].tolist(), record["mol_ptr"].tolist()
    clusters = []
    for k, meta in enumerate(record["meta"]):
        atoms, mols = slice(atom_ptr[k], atom_ptr[k + 1]), slice(mol_ptr[k], mol_ptr[k + 1])
        fields = {key: record[key][atoms] for key in PER_ATOM}
        fields.update({key: record[key][mols] for key in PER_MOLECULE})
        num_mols = mol_ptr[k + 1] - mol_ptr[k]
        clusters.append(
            AssemblyData(
                **fields,
                pos=fields["pos_start"],
                num_mols=num_mols,
                mol_batch=torch.zeros(num_mols, dtype=torch.long),
                **meta,
            )
        )
    return clusters


def migrate_legacy(folder: Path) -> Path:
    """Turn ``folder/clusters.pt`` into ``folder/clusters.safetensors`` (once, under the folder's lock)."""
    from kflow_mol.data.locking import folder_lock

    store, legacy = folder / STORE_NAME, folder / LEGACY_NAME
    with folder_lock(folder):
        if not store.exists() and legacy.exists():
            print(f"kflow: migrating {legacy} to the memory-mapped {STORE_NAME} (once)", file=sys.stderr)
            save_clusters(store, load_clusters_legacy(legacy))
            legacy.unlink(missing_ok=True)
    return store


def open_clusters(folder: Path) -> AssemblyDataset:
    """Every cluster of a prepared folder, lazily (a former ``clusters.pt`` is migrated first)."""
    folder = Path(folder)
    store = folder / STORE_NAME
    if not store.exists() and (folder / LEGACY_NAME).exists():
        migrate_legacy(folder)
    if not store.exists():
        raise FileNotFoundError(f"{store}: no prepared clusters (run scripts/prepare_assembly_data.py)")
    return AssemblyDataset(ClusterStore(store))


def load_clusters(path: Path) -> list[AssemblyData]:
    """Every cluster of ``<folder>/clusters.safetensors`` (or a former ``clusters.pt``) as a list."""
    path = Path(path)
    if path.suffix == ".pt" and path.exists():
        return load_clusters_legacy(path)
    return list(open_clusters(path.parent))


def _same_cluster(a: AssemblyData, b) -> bool:
    """Same fields, equal tensors (dtype and values) and equal metadata."""
    if not isinstance(b, Data) or sorted(a.keys()) != sorted(b.keys()):
        return False
    for key in a.keys():
        x, y = a[key], b[key]
        if torch.is_tensor(x) != torch.is_tensor(y):
            return False
        if torch.is_tensor(x) and not (x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)):
            return False
        if not torch.is_tensor(x) and x != y:
            return False
    return True


class AssemblyDataset(Dataset):
    """Clusters of a container, built one at a time in ``__getitem__`` (a list-like torch Dataset).

    Indexing with an int gives an :class:`AssemblyData`; a slice, or a list / array of
    indices, gives another ``AssemblyDataset`` over the same mapped file (no copy). ``len``,
    iteration, ``in``, ``==`` against a list and ``+`` (a list) behave as for a list, so
    callers written for lists keep working while memory stays at the working set.

    Args:
        store: the mapped container.
        indices: the container rows of this view, in order (None: all).
    """

    def __init__(self, store: ClusterStore, indices: np.ndarray | None = None):
        self.store = store
        self.indices = np.arange(len(store)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return AssemblyDataset(self.store, self.indices[key])
        if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.ndim == 0):
            return self.store.cluster(int(self.indices[int(key)]))
        return AssemblyDataset(self.store, self.indices[np.asarray(key, dtype=np.int64)])

    def __iter__(self) -> Iterator[AssemblyData]:
        for row in self.indices:
            yield self.store.cluster(int(row))

    def __add__(self, other):
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other) -> bool:
        if isinstance(other, AssemblyDataset):
            return self.store.path == other.store.path and np.array_equal(self.indices, other.indices)
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(_same_cluster(a, b) for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"AssemblyDataset({len(self)} clusters of {self.store.path})"

    def meta(self, index: int) -> dict:
        """The metadata fields of item ``index`` (no tensor is read)."""
        return self.store.meta(int(self.indices[index]))


# ----------------------------------------------------------------------- CSV layout


def csv_cluster_data(files: csv_layout.ClusterFiles) -> AssemblyData:
    """Rigid record of a cluster read from the COD-Cluster17 CSV layout.

    Raises:
        CrystalRejected: ``not_rigid`` when a start molecule is not a rigid motion of its target.
    """
    rot_target, trans_target, body = cluster_body_frames(files.target)
    fits = [fit_rotation(b, s) for b, s in zip(body, files.start)]
    worst = max(rmsd for _, _, rmsd in fits)
    if worst > RIGID_TOLERANCE:
        raise CrystalRejected("not_rigid", f"{files.cluster_id}: start molecule RMSD {worst:.4f} Å after rigid fit")
    rot_start = np.stack([r for r, _, _ in fits])
    trans_start = np.stack([t for _, t, _ in fits])
    ours = CLUSTER_ID_PATTERN.match(files.cluster_id)
    crystal_id = ours.group(1) if ours else files.cluster_id
    meta = {
        "cluster_id": files.cluster_id,
        "crystal_id": crystal_id,
        "formula": hill_formula(files.numbers[0]),
        "source": SOURCE_TAGS["cod_cluster17"],
        "synthetic": False,
        "start_scheme": "published",
    }
    return rigid_cluster_data(files.numbers, body, rot_start, trans_start, rot_target, trans_target, meta)


def write_csv_layout(folder: Path, clusters: list[AssemblyData]) -> None:
    """Write clusters in the COD-Cluster17 CSV layout under ``folder/raw``."""
    for c in clusters:
        csv_layout.write_cluster_pair(
            folder,
            c.cluster_id,
            c.z.numpy(),
            c.mol_index.numpy(),
            c.pos_start.double().numpy(),
            c.pos_target.double().numpy(),
        )


# ------------------------------------------------------------------------------- load


def load_assembly_dataset(
    folder: str | Path, split: str | None = None, split_mode: str | None = None
) -> AssemblyDataset:
    """Clusters of a processed dataset, optionally one split, memory-mapped and built lazily.

    Args:
        folder: a folder written by :func:`build_assembly_dataset` (a former ``clusters.pt``
            is migrated to ``clusters.safetensors`` on first use).
        split: ``"train"``, ``"val"``, ``"test"`` or None (all clusters).
        split_mode: ``"formula"`` or ``"random"``; None = the file's default.

    Returns:
        The clusters, in build order: a list-like :class:`AssemblyDataset`.

    Raises:
        ValueError: for an evaluation-only source (``pyxtal_mech``) unless ``split="test"``.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"{manifest_path}: not a processed assembly dataset (run scripts/prepare_assembly_data.py)"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("evaluation_only") and split != "test":
        raise ValueError(f"{folder}: {manifest['settings']['source']} is evaluation-only; load it with split='test'")
    clusters = open_clusters(folder)
    if split is None:
        return clusters
    keep = split_ids(read_splits(folder / "splits.json"), split, split_mode)
    return clusters[[k for k in range(len(clusters)) if clusters.meta(k)["crystal_id"] in keep]]
