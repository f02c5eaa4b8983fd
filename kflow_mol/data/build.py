"""Build a processed dataset from a source, with a settings-hashed on-disk cache.

One build: list the source's entries → for each, read, perceive molecules, cut clusters and
draw start states (or read a CSV pair) → write ``clusters.pt``, ``splits.json`` (once),
``manifest.json``, ``rejections.csv``, ``rejection_summary.txt`` and optionally the CSV
layout. Bad entries become :class:`Rejection` rows; the batch always finishes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kflow_mol.data import cod_cluster17 as csv_layout
from kflow_mol.data.clusters import cut_clusters
from kflow_mol.data.crystals import REJECTION_REASONS, CrystalRejected, perceive_molecules
from kflow_mol.data.dataset import (
    FORMAT_VERSION,
    AssemblyData,
    crystal_cluster_data,
    csv_cluster_data,
    load_assembly_dataset,
    load_clusters,
    save_clusters,
    write_csv_layout,
)
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
from kflow_mol.data.splits import all_in, make_splits, read_splits, write_splits_once
from kflow_mol.data.start_states import StartScheme, start_scheme

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_SPLITS = {"pyxtal": REPO_ROOT / "data" / "splits" / "pyxtal_testdb.json"}


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
        unsplit: kept crystal ids missing from an older ``splits.json``.
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
    """Short hash of the settings, the input files' hashes and the format version."""
    text = json.dumps({"settings": settings, "inputs": fingerprint, "version": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------- per entry


def _crystal_clusters(entry: SourceEntry, settings: dict, scheme: StartScheme) -> list[AssemblyData]:
    molecular = perceive_molecules(entry.load(), settings["max_atoms"], use_rdkit=settings["rdkit_check"])
    clusters = cut_clusters(molecular, settings["num_mols"], settings["criterion"], settings["min_distance"])
    tag = SOURCE_TAGS[settings["source"]]
    meta = {"formula": molecular.formula, "source": tag, "synthetic": settings["source"] in SYNTHETIC}
    return [
        crystal_cluster_data(cluster, scheme, settings["seed"], repeat, meta)
        for repeat in range(settings["repeats"])
        for cluster in clusters
    ]


def _entries(name: str, input: Path | None, settings: dict) -> list[SourceEntry]:
    if name == "cod_cluster17":
        folder = Path(input)
        return [SourceEntry(cid, lambda c=cid: csv_layout.read_cluster_pair(folder, c))
                for cid in csv_layout.list_cluster_ids(folder)]
    if name == "pyxtal_random":
        from kflow_mol.data.synthetic import synthetic_entries

        return synthetic_entries(Path(input), settings["synthetic_per_molecule"], settings["seed"])
    return crystal_entries(name, input)


def _run(entries: list[SourceEntry], settings: dict, scheme: StartScheme, progress: bool):
    """Process every entry; returns (clusters, crystal id → formula, rejections)."""
    from tqdm.auto import tqdm

    clusters: list[AssemblyData] = []
    formulas: dict[str, str] = {}
    rejected: list[Rejection] = []
    for entry in tqdm(entries, desc=f"prepare {settings['source']}", disable=not progress):
        try:
            if settings["source"] == "cod_cluster17":
                data = [csv_cluster_data(entry.load())]
            else:
                data = _crystal_clusters(entry, settings, scheme)
        except CrystalRejected as error:
            rejected.append(Rejection(entry.entry_id, error.reason, error.detail))
            continue
        clusters.extend(data)
        formulas[data[0].crystal_id] = data[0].formula
    return clusters, formulas, rejected


# ---------------------------------------------------------------------------- outputs


def _splits_for(name: str, input_is_default: bool, formulas: dict[str, str], settings: dict) -> dict:
    if name in EVALUATION_ONLY:
        return all_in("test", list(formulas), evaluation_only=True)
    if name in SYNTHETIC:
        return all_in("train", list(formulas), synthetic=True)
    committed = COMMITTED_SPLITS.get(name)
    if input_is_default and committed is not None and committed.exists():
        return read_splits(committed)
    return make_splits(formulas, tuple(settings["fractions"]), settings["split_seed"], settings["split_mode"])


def _write_splits(output: Path, name: str, splits: dict) -> dict:
    if name in SYNTHETIC or name in EVALUATION_ONLY:  # one fixed part: nothing to keep stable
        (output / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
        return splits
    return write_splits_once(output / "splits.json", splits)


def _write_rejections(output: Path, report: BuildReport) -> None:
    rows = ["entry_id,reason,detail"] + [
        f"{r.entry_id},{r.reason},\"{r.detail.replace(chr(34), chr(39))}\"" for r in report.rejected
    ]
    (output / "rejections.csv").write_text("\n".join(rows) + "\n")
    (output / "rejection_summary.txt").write_text(report.summary_table() + "\n")


def _write_manifest(output: Path, report: BuildReport, settings: dict, input, formulas: dict[str, str]) -> None:
    manifest = {
        "format_version": FORMAT_VERSION, "settings_hash": report.settings_hash, "settings": settings,
        "input": str(input) if input is not None else None, "source_tag": SOURCE_TAGS[report.source],
        "evaluation_only": report.source in EVALUATION_ONLY, "synthetic": report.source in SYNTHETIC,
        "kept_crystals": report.kept_crystals, "kept_clusters": report.kept_clusters,
        "reason_counts": report.reason_counts, "rejected": [asdict(r) for r in report.rejected],
        "seconds": report.seconds, "crystals": formulas, "unsplit": report.unsplit,
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _cached_report(output: Path, digest: str) -> BuildReport | None:
    manifest_path = output / "manifest.json"
    if not (manifest_path.exists() and (output / "clusters.pt").exists()):
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("settings_hash") != digest:
        return None
    return BuildReport(
        manifest["settings"]["source"], output, manifest["kept_crystals"], manifest["kept_clusters"],
        [Rejection(**r) for r in manifest["rejected"]], manifest["reason_counts"], manifest["seconds"],
        True, digest, manifest.get("unsplit", []),
    )


# ------------------------------------------------------------------------------ build


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
        seed: base seed of the start states (and of the synthetic packings).
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
    cached = None if force else _cached_report(output, digest)
    if cached is not None:
        if write_csv and not (output / csv_layout.FINAL_DIR).exists():
            write_csv_layout(output, load_clusters(output / "clusters.pt"))
        return cached

    started = time.perf_counter()
    entries = _entries(name, input, settings)
    if ids is not None:
        wanted = set(ids)
        entries = [e for e in entries if e.entry_id in wanted]
    clusters, formulas, rejected = _run(entries, settings, scheme, progress)

    output.mkdir(parents=True, exist_ok=True)
    save_clusters(output / "clusters.pt", clusters)
    input_is_default = input is None or Path(input) == default_input(name)
    splits = _write_splits(output, name, _splits_for(name, input_is_default, formulas, settings))
    in_splits = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    report = BuildReport(name, output, len(formulas), len(clusters), rejected, counts,
                         time.perf_counter() - started, False, digest, sorted(set(formulas) - in_splits))
    _write_rejections(output, report)
    _write_manifest(output, report, settings, input, formulas)
    if write_csv:
        shutil.rmtree(output / "raw", ignore_errors=True)
        write_csv_layout(output, clusters)
    return report


def load_embedded_dataset(
    split: str | None = "train", start: str = "local", repeats: int = 1, progress: bool = False, **settings
) -> list[AssemblyData]:
    """The default dataset (pyxtal's test.db, committed splits), built into the cache once.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or None (all).
        start: start preset.
        repeats: start states per cluster.
        progress: show the build progress bar.
        **settings: further :func:`build_assembly_dataset` arguments.
    """
    report = build_assembly_dataset("pyxtal", start=start, repeats=repeats, progress=progress, **settings)
    return load_assembly_dataset(report.output, split)
