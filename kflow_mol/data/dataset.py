"""Clusters as torch-geometric data: the rigid-body record, on-disk cache, and loading.

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
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from kflow_mol.data import cod_cluster17 as csv_layout
from kflow_mol.data.clusters import Cluster, body_frame, cut_clusters
from kflow_mol.data.crystals import REJECTION_REASONS, CrystalRejected, hill_formula, perceive_molecules
from kflow_mol.data.sources import (
    EVALUATION_ONLY,
    SOURCE_TAGS,
    SYNTHETIC,
    SourceEntry,
    canonical_source,
    crystal_entries,
    default_input,
    input_fingerprint,
)
from kflow_mol.data.splits import all_in, make_splits, read_splits, split_ids, write_splits_once
from kflow_mol.data.start_states import StartScheme, draw_start_state, start_rng, start_scheme

FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_SPLITS = {"pyxtal": REPO_ROOT / "data" / "splits" / "pyxtal_testdb.json"}
PER_ATOM = ("z", "mol_index", "pos_start", "pos_target", "body")
PER_MOLECULE = (
    "rot_start", "trans_start", "rot_target", "trans_target", "rot_start_to_target", "trans_start_to_target",
)
META_FIELDS = ("cluster_id", "crystal_id", "formula", "source", "synthetic", "start_scheme")
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


def save_clusters(path: Path, clusters: list[AssemblyData]) -> None:
    """Store clusters as concatenated tensors (loadable with ``weights_only=True``)."""
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


def load_clusters(path: Path) -> list[AssemblyData]:
    """Inverse of :func:`save_clusters`."""
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
        clusters.append(AssemblyData(
            **fields, pos=fields["pos_start"], num_mols=num_mols,
            mol_batch=torch.zeros(num_mols, dtype=torch.long), **meta,
        ))
    return clusters


# ------------------------------------------------------------------------------ build


@dataclass
class Rejection:
    """An entry that was left out, with its reason key and a readable detail."""

    entry_id: str
    reason: str
    detail: str


@dataclass
class BuildReport:
    """What a build produced.

    Attributes:
        source: CLI source name.
        output: dataset folder.
        kept_crystals: crystals with at least one cluster.
        kept_clusters: clusters written.
        rejected: the entries left out.
        reason_counts: rejection reason → count.
        seconds: build time (of the original build when ``cached``).
        cached: True when an up-to-date build was found and reused.
        settings_hash: hash of settings and input files (names the cache folder).
    """

    source: str
    output: Path
    kept_crystals: int
    kept_clusters: int
    rejected: list[Rejection]
    reason_counts: dict[str, int]
    seconds: float
    cached: bool
    settings_hash: str
    unsplit: list[str] = field(default_factory=list)

    def summary_table(self) -> str:
        """Plain-text table of kept counts and rejection reasons."""
        lines = [f"source={self.source}: kept {self.kept_crystals} crystals, {self.kept_clusters} clusters; "
                 f"rejected {len(self.rejected)}", f"{'reason':<20}{'count':>6}  meaning"]
        for reason, count in sorted(self.reason_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{reason:<20}{count:>6}  {REJECTION_REASONS.get(reason, '')}")
        return "\n".join(lines)


def default_cache_root() -> Path:
    """``$KFLOW_CACHE`` or ``<repo>/data/cache``."""
    return Path(os.environ.get("KFLOW_CACHE", REPO_ROOT / "data" / "cache"))


def settings_hash(settings: dict, fingerprint: dict) -> str:
    import hashlib

    text = json.dumps({"settings": settings, "inputs": fingerprint, "version": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _process_crystal(entry: SourceEntry, settings: dict, scheme: StartScheme, tag: str) -> tuple[list[AssemblyData], str]:
    crystal = entry.load()
    molecular = perceive_molecules(crystal, settings["max_atoms"], use_rdkit=settings["rdkit_check"])
    clusters = cut_clusters(molecular, settings["num_mols"], settings["criterion"], settings["min_distance"])
    meta = {"formula": molecular.formula, "source": tag, "synthetic": tag == SOURCE_TAGS["pyxtal_random"]}
    data = [
        crystal_cluster_data(cluster, scheme, settings["seed"], repeat, meta)
        for repeat in range(settings["repeats"])
        for cluster in clusters
    ]
    return data, molecular.formula


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
    meta = {"cluster_id": files.cluster_id, "crystal_id": crystal_id, "formula": hill_formula(files.numbers[0]),
            "source": SOURCE_TAGS["cod_cluster17"], "synthetic": False, "start_scheme": "published"}
    return rigid_cluster_data(files.numbers, body, rot_start, trans_start, rot_target, trans_target, meta)


def _csv_entries(folder: Path) -> list[SourceEntry]:
    return [SourceEntry(cid, lambda c=cid: csv_layout.read_cluster_pair(folder, c)) for cid in csv_layout.list_cluster_ids(folder)]


def write_csv_layout(folder: Path, clusters: list[AssemblyData]) -> None:
    """Write clusters in the COD-Cluster17 CSV layout under ``folder/raw``."""
    for c in clusters:
        csv_layout.write_cluster_pair(folder, c.cluster_id, c.z.numpy(), c.mol_index.numpy(),
                                      c.pos_start.double().numpy(), c.pos_target.double().numpy())


def _initial_splits(name: str, input_is_default: bool, formulas: dict[str, str], settings: dict) -> dict:
    if name in EVALUATION_ONLY:
        return all_in("test", list(formulas), evaluation_only=True)
    if name in SYNTHETIC:
        return all_in("train", list(formulas), synthetic=True)
    committed = COMMITTED_SPLITS.get(name)
    if input_is_default and committed is not None and committed.exists():
        return read_splits(committed)
    return make_splits(formulas, tuple(settings["fractions"]), settings["split_seed"], settings["split_mode"])


def build_assembly_dataset(
    source: str,
    input: str | Path | None = None,
    output: str | Path | None = None,
    start: str | StartScheme = "local",
    repeats: int = 1,
    seed: int = 0,
    num_mols: int = 17,
    criterion: str = "centroid",
    max_atoms: int = 100,
    min_distance: float = 1.0,
    rdkit_check: bool = True,
    split_mode: str = "formula",
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    ids: list[str] | None = None,
    synthetic_per_molecule: int = 2,
    write_csv: bool = False,
    progress: bool = True,
    force: bool = False,
) -> BuildReport:
    """Build (or reuse) a processed cluster dataset.

    Args:
        source: ``cif`` | ``pyxtal`` | ``pyxtal_mech`` | ``pyxtal_random`` | ``cod_cluster17``.
        input: CIF folder, ASE db, CSV-layout folder, or (``pyxtal_random``) a processed
            dataset whose train molecules seed the synthetic crystals; None = the default.
        output: dataset folder; None = ``default_cache_root()/<source>_<settings hash>``.
        start: start preset name (``local``/``scrambled``) or a :class:`StartScheme`.
        repeats: start states per cluster (augmentation).
        seed: base seed of the start states.
        num_mols: molecules per cluster.
        criterion: neighbour ranking, ``centroid`` or ``contact``.
        max_atoms: largest molecule kept (atoms, H included).
        min_distance: Å, crystal clusters with a closer intermolecular pair are rejected.
        rdkit_check: check each molecule's bonding with RDKit.
        split_mode: default split, ``formula`` (formula-disjoint) or ``random``.
        split_seed: seed of the splits (used only when splits.json is first written).
        fractions: train/val/test shares.
        ids: only these entry ids (subset builds, tests).
        synthetic_per_molecule: random crystals per training molecule (``pyxtal_random``).
        write_csv: also write the COD-Cluster17 CSV layout under ``output/raw``.
        progress: show a progress bar.
        force: rebuild even when an up-to-date build exists.

    Returns:
        The build report (also saved as ``manifest.json``).
    """
    from tqdm.auto import tqdm

    name = canonical_source(source)
    scheme = start_scheme(start)
    if repeats < 1 or num_mols < 2:
        raise ValueError(f"need repeats >= 1 and num_mols >= 2, got repeats={repeats}, num_mols={num_mols}")
    if name == "pyxtal_random" and input is None:
        input = build_assembly_dataset("pyxtal", progress=progress).output
    settings = {
        "source": name, "start": asdict(scheme), "repeats": repeats, "seed": seed, "num_mols": num_mols,
        "criterion": criterion, "max_atoms": max_atoms, "min_distance": min_distance, "rdkit_check": rdkit_check,
        "split_mode": split_mode, "split_seed": split_seed, "fractions": list(fractions),
        "ids": sorted(ids) if ids is not None else None,
        "synthetic_per_molecule": synthetic_per_molecule if name == "pyxtal_random" else None,
    }
    digest = settings_hash(settings, input_fingerprint(name, input))
    output = Path(output) if output is not None else default_cache_root() / f"{name}_{digest}"
    manifest_path = output / "manifest.json"
    if not force and manifest_path.exists() and (output / "clusters.pt").exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("settings_hash") == digest:
            report = _report_from_manifest(manifest, output, cached=True)
            if write_csv and not (output / csv_layout.FINAL_DIR).exists():
                write_csv_layout(output, load_clusters(output / "clusters.pt"))
            return report

    started = time.perf_counter()
    tag = SOURCE_TAGS[name]
    if name == "cod_cluster17":
        entries = _csv_entries(Path(input))
    elif name == "pyxtal_random":
        from kflow_mol.data.synthetic import synthetic_entries

        entries = synthetic_entries(Path(input), synthetic_per_molecule, seed)
    else:
        entries = crystal_entries(name, input)
    if ids is not None:
        wanted = set(ids)
        entries = [e for e in entries if e.entry_id in wanted]

    clusters: list[AssemblyData] = []
    formulas: dict[str, str] = {}
    rejected: list[Rejection] = []
    for entry in tqdm(entries, desc=f"prepare {name}", disable=not progress):
        try:
            if name == "cod_cluster17":
                data = [csv_cluster_data(entry.load())]
                formula = data[0].formula
                crystal_id = data[0].crystal_id
            else:
                data, formula = _process_crystal(entry, settings, scheme, tag)
                crystal_id = entry.entry_id
        except CrystalRejected as error:
            rejected.append(Rejection(entry.entry_id, error.reason, error.detail))
            continue
        clusters.extend(data)
        formulas[crystal_id] = formula

    output.mkdir(parents=True, exist_ok=True)
    save_clusters(output / "clusters.pt", clusters)
    input_is_default = input is None or Path(input) == default_input(name)
    splits = _initial_splits(name, input_is_default, formulas, settings)
    if name in SYNTHETIC or name in EVALUATION_ONLY:  # one fixed part: nothing to keep stable
        (output / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
    else:
        splits = write_splits_once(output / "splits.json", splits)
    in_splits = set().union(*(set(splits[k]) for k in ("train", "val", "test")))
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    report = BuildReport(name, output, len(formulas), len(clusters), rejected, counts,
                         time.perf_counter() - started, False, digest, sorted(set(formulas) - in_splits))
    _write_rejections(output, report)
    manifest = {
        "format_version": FORMAT_VERSION, "settings_hash": digest, "settings": settings,
        "input": str(input) if input is not None else None, "source_tag": tag,
        "evaluation_only": name in EVALUATION_ONLY, "synthetic": name in SYNTHETIC,
        "kept_crystals": report.kept_crystals, "kept_clusters": report.kept_clusters,
        "reason_counts": counts, "rejected": [asdict(r) for r in rejected], "seconds": report.seconds,
        "crystals": formulas, "unsplit": report.unsplit,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    if write_csv:
        shutil.rmtree(output / "raw", ignore_errors=True)
        write_csv_layout(output, clusters)
    return report


def _write_rejections(output: Path, report: BuildReport) -> None:
    rows = ["entry_id,reason,detail"] + [
        f"{r.entry_id},{r.reason},\"{r.detail.replace(chr(34), chr(39))}\"" for r in report.rejected
    ]
    (output / "rejections.csv").write_text("\n".join(rows) + "\n")
    (output / "rejection_summary.txt").write_text(report.summary_table() + "\n")


def _report_from_manifest(manifest: dict, output: Path, cached: bool) -> BuildReport:
    return BuildReport(
        manifest["settings"]["source"], output, manifest["kept_crystals"], manifest["kept_clusters"],
        [Rejection(**r) for r in manifest["rejected"]], manifest["reason_counts"], manifest["seconds"],
        cached, manifest["settings_hash"], manifest.get("unsplit", []),
    )


# ------------------------------------------------------------------------------- load


def load_assembly_dataset(folder: str | Path, split: str | None = None, split_mode: str | None = None) -> list[AssemblyData]:
    """Clusters of a processed dataset, optionally one split.

    Args:
        folder: a folder written by :func:`build_assembly_dataset`.
        split: ``"train"``, ``"val"``, ``"test"`` or None (all clusters).
        split_mode: ``"formula"`` or ``"random"``; None = the file's default.

    Returns:
        The clusters, in build order.

    Raises:
        ValueError: for an evaluation-only source (``pyxtal_mech``) unless ``split="test"``.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path}: not a processed assembly dataset (run scripts/prepare_assembly_data.py)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("evaluation_only") and split != "test":
        raise ValueError(f"{folder}: {manifest['settings']['source']} is evaluation-only; load it with split='test'")
    clusters = load_clusters(folder / "clusters.pt")
    if split is None:
        return clusters
    keep = split_ids(read_splits(folder / "splits.json"), split, split_mode)
    return [c for c in clusters if c.crystal_id in keep]


def load_embedded_dataset(
    split: str | None = "train", start: str = "local", repeats: int = 1, progress: bool = False, **settings
) -> list[AssemblyData]:
    """The default dataset (pyxtal's test.db, committed splits), built into the cache once."""
    report = build_assembly_dataset("pyxtal", start=start, repeats=repeats, progress=progress, **settings)
    return load_assembly_dataset(report.output, split)
