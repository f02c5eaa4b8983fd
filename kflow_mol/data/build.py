"""Build a processed dataset from a source, with a settings-hashed on-disk cache.

One build: list the source's entries → for each, read, perceive molecules, cut clusters and
draw start states (or read a CSV pair) → write ``clusters.safetensors``, ``splits.json`` (once),
``manifest.json``, ``rejections.csv``, ``rejection_summary.txt`` and optionally the CSV
layout. Bad entries become :class:`Rejection` rows; the batch always finishes: any exception
of one entry becomes an ``error`` row (traceback in ``errors.log``), an entry over the time
limit a ``timeout`` row (see :mod:`kflow_mol.data.isolation`), and every listed file is kept,
rejected or skipped exactly once (:meth:`BuildReport.accounting`).

Limits are recorded in the manifest but are not part of the cache key: after changing them,
rebuild with ``force=True``. A build holds ``output/.lock`` (:mod:`kflow_mol.data.locking`:
a second build of the same folder waits, then reuses the first one's result) and is
resumable: entries are processed by ``workers`` processes, their results written in atomic
parts under ``output/.parts`` (:mod:`kflow_mol.data.shards`) and merged in input order, so a
killed or interrupted build continues where it stopped and gives the same result as an
uninterrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

from kflow_mol.data import cod_cluster17 as csv_layout
from kflow_mol.data.ase_source import ase_entries
from kflow_mol.data.clusters import cut_clusters
from kflow_mol.data.crystals import (
    REJECTION_REASONS,
    CrystalRejected,
    perceive_molecules,
)
from kflow_mol.data.dataset import (
    FORMAT_VERSION,
    LEGACY_NAME,
    STORE_NAME,
    AssemblyData,
    AssemblyDataset,
    crystal_cluster_data,
    csv_cluster_data,
    load_assembly_dataset,
    open_clusters,
    write_csv_layout,
)
from kflow_mol.data.dedup import CrystalRecord, find_duplicates, reduced_cell
from kflow_mol.data.isolation import Outcome, run_guarded
from kflow_mol.data.locking import folder_lock
from kflow_mol.data.real import (
    COLLECTIONS,
    evaluation_formulas,
    pinned_testdb_parts,
    real_entries,
    real_fingerprint,
    source_split_counts,
)
from kflow_mol.data.shards import PART_DIR, Done, Kept, Parts, parts_key
from kflow_mol.data.sources import (
    EVALUATION_ONLY,
    SOURCE_TAGS,
    SYNTHETIC,
    Skipped,
    SourceEntry,
    canonical_source,
    cif_entries,
    cif_files,
    crystal_entries,
    default_input,
    input_fingerprint,
)
from kflow_mol.data.splits import (
    ALL_TEST,
    BUILD_SPLIT_MODES,
    all_in,
    make_pinned_splits,
    make_splits,
    read_splits,
    write_splits_once,
)
from kflow_mol.data.start_states import StartScheme, start_scheme
from kflow_mol.data.store import cluster_block

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED_SPLITS = {"pyxtal": REPO_ROOT / "data" / "splits" / "pyxtal_testdb.json"}
DEFAULT_TIME_LIMIT = 60.0  # s per entry; the slowest of the 40 COD crystals takes < 1 s
DEFAULT_MAX_FILE_MB = 50.0  # the largest COD organic CIFs are a few MB


@dataclass
class Rejection:
    """An entry that was left out, with its reason key and a readable detail."""

    entry_id: str
    reason: str
    detail: str


class NoInputError(ValueError):
    """The input holds no entry to build (no CIF file, an empty database, no matching id)."""


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
        skipped: files of the input folder that are not entries (``not a CIF``).
        entries: entries listed (CIF candidates, rows, ...): kept + rejected once complete.
        complete: False when the batch was interrupted (outputs hold what was done).
        slowest: ``[entry id, seconds]`` of the slowest entries.
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
    skipped: list[Skipped] = field(default_factory=list)
    entries: int = 0
    complete: bool = True
    slowest: list[list] = field(default_factory=list)

    def accounting(self) -> str:
        """``"<kept> kept + <rejected> rejected + <skipped> skipped = <N> inputs"`` (always balances)."""
        total = self.kept_crystals + len(self.rejected) + len(self.skipped)
        line = (
            f"{self.kept_crystals} kept + {len(self.rejected)} rejected + {len(self.skipped)} skipped = {total} inputs"
        )
        done = self.kept_crystals + len(self.rejected)
        return line if self.complete else f"{line} (INTERRUPTED: {done} of {self.entries} entries done)"

    def summary_table(self) -> str:
        """Plain-text table of kept counts, rejection reasons and skipped files."""
        head = (
            f"source={self.source}: kept {self.kept_crystals} crystals, {self.kept_clusters} clusters; "
            f"rejected {len(self.rejected)}; skipped {len(self.skipped)}"
        )
        lines = [head, f"{'reason':<20}{'count':>6}  meaning"]
        for reason, count in sorted(self.reason_counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{reason:<20}{count:>6}  {REJECTION_REASONS.get(reason, '')}")
        lines += [f"skipped: {s.reason}: {s.name}" for s in self.skipped]
        lines.append(self.accounting())
        return "\n".join(lines)


def default_cache_root() -> Path:
    """``$KFLOW_CACHE`` or ``<repo>/data/cache``."""
    return Path(os.environ.get("KFLOW_CACHE", REPO_ROOT / "data" / "cache"))


def settings_hash(settings: dict, fingerprint: dict) -> str:
    """Short hash of the settings, the input files' hashes and the format version."""
    text = json.dumps({"settings": settings, "inputs": fingerprint, "version": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------- per entry


@dataclass
class _EntryOutput:
    """One entry's clusters as container arrays (built in the worker) and what the merge needs."""

    block: dict
    kept: Kept


def _entry_output(clusters: list[AssemblyData], cell: tuple[float, ...] | None = None) -> _EntryOutput:
    first = clusters[0]
    kept = Kept(len(clusters), first.crystal_id, first.formula, first.source, list(cell) if cell else None)
    return _EntryOutput(cluster_block(clusters), kept)


def _crystal_clusters(entry: SourceEntry, settings: dict, scheme: StartScheme) -> _EntryOutput | None:
    molecular = perceive_molecules(entry.load(), settings["max_atoms"], use_rdkit=settings["rdkit_check"])
    clusters = cut_clusters(molecular, settings["num_mols"], settings["criterion"], settings["min_distance"])
    tag = entry.meta.get("source_tag") or SOURCE_TAGS[settings["source"]]
    meta = {"formula": molecular.formula, "source": tag, "synthetic": settings["source"] in SYNTHETIC}
    data = [
        crystal_cluster_data(cluster, scheme, settings["seed"], repeat, meta)
        for repeat in range(settings["repeats"])
        for cluster in clusters
    ]
    if not data:
        return None
    return _entry_output(data, reduced_cell(molecular.crystal.cell) if settings["source"] == "real" else None)


def _entries(name: str, input: Path | None, settings: dict) -> tuple[list[SourceEntry], list[Skipped]]:
    if name == "cod_cluster17":
        folder = Path(input)
        entries = [
            SourceEntry(cid, lambda c=cid: csv_layout.read_cluster_pair(folder, c))
            for cid in csv_layout.list_cluster_ids(folder)
        ]
        return entries, []
    if name == "pyxtal_random":
        from kflow_mol.data.synthetic import synthetic_entries

        return synthetic_entries(Path(input), settings["synthetic_per_molecule"], settings["seed"]), []
    if name == "cif":
        if input is None:
            raise ValueError("source=cif needs input=<folder of CIF files>")
        return cif_entries(Path(input)), cif_files(Path(input))[1]
    if name == "ase":
        if input is None:
            raise ValueError("source=ase needs input=<structure file or folder>")
        return ase_entries(Path(input), SOURCE_TAGS["ase"], "", settings["time_limit"], settings["max_file_mb"])
    if name == "real":
        return real_entries(input, settings["time_limit"], settings["max_file_mb"])
    return crystal_entries(name, input), []


def _entry_clusters(entry: SourceEntry, settings: dict, scheme: StartScheme) -> _EntryOutput:
    """The clusters of one entry (size limit first), or CrystalRejected."""
    path = entry.meta.get("path")
    limit_mb = settings.get("max_file_mb")
    if path is not None and limit_mb:
        size = Path(path).stat().st_size
        if size > limit_mb * 1e6:
            raise CrystalRejected("too_large", f"{entry.meta.get('file', path)}: {size / 1e6:.1f} MB > {limit_mb} MB")
    if settings["source"] == "cod_cluster17":
        return _entry_output([csv_cluster_data(entry.load())])
    data = _crystal_clusters(entry, settings, scheme)
    if data is None:
        raise CrystalRejected("unparsable", f"{entry.entry_id}: no cluster could be cut")
    return data


@dataclass
class _BatchResult:
    """Per-entry results of one batch (clusters stay on disk in ``parts``), in entry order once finished."""

    clusters: dict[int, Kept] = field(default_factory=dict)
    rejected: dict[int, Rejection] = field(default_factory=dict)
    tracebacks: dict[int, str] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    complete: bool = False
    parts: Parts | None = None

    def ordered(self) -> tuple[dict[str, str], list[Rejection]]:
        formulas = {self.clusters[i].crystal_id: self.clusters[i].formula for i in sorted(self.clusters)}
        return formulas, [self.rejected[i] for i in sorted(self.rejected)]

    def slowest(self, entries: list[SourceEntry], count: int = 5) -> list[list]:
        ranked = sorted(self.seconds.items(), key=lambda kv: (-kv[1], kv[0]))[:count]
        return [[entries[i].entry_id, round(t, 3)] for i, t in ranked]

    def record(self, entries: list[SourceEntry], done: Done) -> Rejection | None:
        """Take one entry's outcome; returns its rejection (None when kept)."""
        self.seconds[done.index] = done.seconds
        if done.kept is not None:
            self.clusters[done.index] = done.kept
            return None
        rejection = Rejection(entries[done.index].entry_id, done.reason, _one_line(done.detail))
        self.rejected[done.index] = rejection
        if done.traceback or done.reason == "timeout":
            self.tracebacks[done.index] = done.traceback or f"killed after {done.seconds:.1f} s\n"
        return rejection


def _done(outcome: Outcome, index: int) -> tuple[Done, dict | None]:
    """An isolation outcome as a recorded entry outcome and its cluster arrays."""
    if outcome.reason is None:
        return Done(index, outcome.seconds, kept=outcome.value.kept), outcome.value.block
    return Done(index, outcome.seconds, None, outcome.reason, outcome.detail, outcome.traceback), None


def _run(
    entries: list[SourceEntry],
    settings: dict,
    scheme: StartScheme,
    limits: dict,
    output: Path,
    progress: bool,
    result: _BatchResult,
) -> None:
    """Process every entry not done yet into ``result``: clusters, or a rejection (``error``/``timeout`` included).

    Entries recorded in ``result.parts`` (default ``output/.parts``) by an earlier, interrupted
    run are taken from there; new results are added to it. ``output/rejections.csv`` and
    ``output/errors.log`` list rejections (and tracebacks) as they happen.
    """
    from tqdm.auto import tqdm

    result.parts = result.parts or Parts(output / PART_DIR)
    for done in result.parts.load():
        result.record(entries, done)
    todo = [i for i in range(len(entries)) if i not in result.seconds]

    def task(k: int) -> _EntryOutput:
        return _entry_clusters(entries[todo[k]], settings, scheme)

    outcomes = run_guarded(task, len(todo), limits["time_limit"], limits["workers"], (CrystalRejected,))
    bar = tqdm(total=len(entries), initial=len(entries) - len(todo), unit="file", disable=not progress)
    bar.set_description(f"prepare {settings['source']} ({limits['workers']} workers)")
    with _RejectionLog(output, entries, result) as log, bar:
        try:
            for outcome in outcomes:
                done, block = _done(outcome, todo[outcome.index])
                result.parts.add(done, block)
                log.write(done.index, result.record(entries, done))
                bar.update()
        finally:  # interrupted or not, what was done is on disk for a rerun
            result.parts.flush()
    result.complete = True


class _RejectionLog:
    """``rejections.csv`` and ``errors.log``, rewritten with the recorded entries, then appended to."""

    def __init__(self, output: Path, entries: list[SourceEntry], result: _BatchResult):
        self.output, self.entries, self.result = output, entries, result

    def __enter__(self) -> _RejectionLog:
        self.rows = open(self.output / "rejections.csv", "w", newline="")
        self.log = open(self.output / "errors.log", "w")
        self.writer = csv.writer(self.rows)
        self.writer.writerow(REJECTION_HEADER)
        for index in sorted(self.result.rejected):
            self.write(index, self.result.rejected[index])
        return self

    def write(self, index: int, rejection: Rejection | None) -> None:
        if rejection is None:
            return
        self.writer.writerow(_rejection_row(rejection))
        self.rows.flush()
        if index in self.result.tracebacks:
            entry = self.entries[index]
            self.log.write(
                f"=== {entry.entry_id} ({entry.meta.get('file', '')}): {rejection.reason}: {rejection.detail}\n"
            )
            self.log.write(self.result.tracebacks[index])
            self.log.flush()

    def __exit__(self, *exc) -> None:
        self.rows.close()
        self.log.close()


# ---------------------------------------------------------------------------- outputs


def _splits_for(
    name: str, input_is_default: bool, formulas: dict[str, str], settings: dict, sources: dict[str, str]
) -> dict:
    if settings["split_mode"] == ALL_TEST or name in EVALUATION_ONLY:
        return all_in("test", list(formulas), evaluation_only=True)
    if name in SYNTHETIC:
        return all_in("train", list(formulas), synthetic=True)
    if name == "real":  # one formula-disjoint split; test.db crystals keep their committed part
        pinned = pinned_testdb_parts(read_splits(COMMITTED_SPLITS["pyxtal"]))
        held_out = {formula: "test" for formula in evaluation_formulas()}  # never train on a mech.db compound
        fractions, seed = tuple(settings["fractions"]), settings["split_seed"]
        splits = make_pinned_splits(formulas, pinned, fractions, seed, held_out, strata=sources)
        note = "test.db crystals (and their formulas) keep data/splits/pyxtal_testdb.json; mech.db formulas in test"
        return {**splits, "note": note}
    committed = COMMITTED_SPLITS.get(name)
    if input_is_default and committed is not None and committed.exists():
        return read_splits(committed)
    return make_splits(formulas, tuple(settings["fractions"]), settings["split_seed"], settings["split_mode"])


def _write_splits(output: Path, name: str, splits: dict) -> dict:
    path = output / "splits.json"
    one_part = name in SYNTHETIC or name in EVALUATION_ONLY or splits.get("mode") == "all_test"
    if one_part or (path.exists() and read_splits(path).get("mode") == "all_test"):
        path.write_text(json.dumps(splits, indent=1) + "\n")  # one fixed part: nothing to keep stable
        return splits
    return write_splits_once(path, splits)


REJECTION_HEADER = ("entry_id", "reason", "detail")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _rejection_row(rejection: Rejection) -> tuple[str, str, str]:
    return rejection.entry_id, rejection.reason, _one_line(rejection.detail)


def _write_rejections(output: Path, report: BuildReport) -> None:
    with open(output / "rejections.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REJECTION_HEADER)
        writer.writerows(_rejection_row(r) for r in report.rejected)
    (output / "rejection_summary.txt").write_text(report.summary_table() + "\n")


def _write_manifest(
    output: Path,
    report: BuildReport,
    settings: dict,
    input,
    formulas: dict[str, str],
    limits: dict,
    per_source: dict | None = None,
) -> None:
    manifest = {
        "format_version": FORMAT_VERSION,
        "settings_hash": report.settings_hash,
        "settings": settings,
        "input": str(input) if input is not None else None,
        "source_tag": SOURCE_TAGS[report.source],
        "evaluation_only": report.source in EVALUATION_ONLY,
        "synthetic": report.source in SYNTHETIC,
        "kept_crystals": report.kept_crystals,
        "kept_clusters": report.kept_clusters,
        "reason_counts": report.reason_counts,
        "rejected": [asdict(r) for r in report.rejected],
        "skipped": [asdict(s) for s in report.skipped],
        "entries": report.entries,
        "complete": report.complete,
        "accounting": report.accounting(),
        "limits": limits,
        "slowest": report.slowest,
        "seconds": report.seconds,
        "crystals": formulas,
        "unsplit": report.unsplit,
        "per_source": per_source or {},
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _cached_report(output: Path, digest: str) -> BuildReport | None:
    manifest_path = output / "manifest.json"
    if not (manifest_path.exists() and ((output / STORE_NAME).exists() or (output / LEGACY_NAME).exists())):
        return None
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("settings_hash") != digest or not manifest.get("complete", True):
        return None
    return BuildReport(
        manifest["settings"]["source"],
        output,
        manifest["kept_crystals"],
        manifest["kept_clusters"],
        [Rejection(**r) for r in manifest["rejected"]],
        manifest["reason_counts"],
        manifest["seconds"],
        True,
        digest,
        manifest.get("unsplit", []),
        [Skipped(**s) for s in manifest.get("skipped", [])],
        manifest.get("entries", manifest["kept_crystals"] + len(manifest["rejected"])),
        True,
        manifest.get("slowest", []),
    )


# ------------------------------------------------------------------------------ build


@dataclass
class _Plan:
    """What one build does: its source, input, output folder, settings, hash and limits."""

    name: str
    input: Path | str | None
    output: Path
    settings: dict
    scheme: StartScheme
    digest: str
    limits: dict
    ids: list[str] | None
    progress: bool
    write_csv: bool

    @property
    def entry_settings(self) -> dict:
        return {**self.settings, "max_file_mb": self.limits["max_file_mb"], "time_limit": self.limits["time_limit"]}


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
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    max_file_mb: float | None = DEFAULT_MAX_FILE_MB,
    workers: int = 1,
) -> BuildReport:
    """Build (or reuse) a processed cluster dataset.

    Args:
        source: ``cif`` | ``pyxtal`` | ``pyxtal_mech`` | ``pyxtal_random`` | ``cod_cluster17``.
        input: CIF folder, ASE db, CSV-layout folder, or a prepared folder (``pyxtal_random``); None: default.
        output: dataset folder; None = ``default_cache_root()/<source>_<settings hash>``.
        start: start preset name (``local``/``scrambled``) or a :class:`StartScheme`.
        repeats: start states per cluster (augmentation).
        seed: base seed of the start states (and of the synthetic packings).
        num_mols, criterion: molecules per cluster; neighbour ranking, ``centroid`` or ``contact``.
        max_atoms: largest molecule kept (atoms, H included).
        min_distance: Å, crystal clusters with a closer intermolecular pair are rejected.
        rdkit_check: check each molecule's bonding with RDKit.
        split_mode: default split, ``formula`` (formula-disjoint), ``random``, or ``all`` (all in ``test``).
        split_seed, fractions: seed and train/val/test shares of the splits (used when splits.json is first written).
        ids: only these entry ids (subset builds, tests).
        synthetic_per_molecule: random crystals per training molecule (``pyxtal_random``).
        write_csv: also write the COD-Cluster17 CSV layout under ``output/raw``.
        progress: show a progress bar (rate, ETA).
        force: rebuild even when an up-to-date build exists.
        time_limit: seconds per entry, then it is killed (``timeout``); None or 0: no limit, run in this process.
        max_file_mb: input files larger than this are rejected as ``too_large`` unread; None: no limit.
        workers: worker processes over the input files (with a time limit); results do not depend on it.

    Returns:
        The build report (also saved as ``manifest.json``).

    Raises:
        NoInputError: the input holds no entry (e.g. a folder without CIF files); nothing is written.
    """
    plan = _plan(dict(locals()))
    if (cached := _reused(plan, force)) is not None:
        return cached
    entries, skipped = _listed_entries(plan)
    with folder_lock(plan.output, quiet=not progress):  # a second build of this folder waits here
        return _reused(plan, force) or _build(plan, entries, skipped, force)  # ... and finds the first one's build


def _plan(arguments: dict) -> _Plan:
    """Check the arguments of :func:`build_assembly_dataset` and derive settings, hash and folder."""
    name, scheme = canonical_source(arguments["source"]), start_scheme(arguments["start"])
    repeats, num_mols, workers = arguments["repeats"], arguments["num_mols"], arguments["workers"]
    if repeats < 1 or num_mols < 2:
        raise ValueError(f"need repeats >= 1 and num_mols >= 2, got repeats={repeats}, num_mols={num_mols}")
    if arguments["split_mode"] not in BUILD_SPLIT_MODES:
        raise ValueError(f"split_mode must be one of {BUILD_SPLIT_MODES}, got {arguments['split_mode']!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    input = arguments["input"]
    if name == "pyxtal_random" and input is None:
        input = build_assembly_dataset("pyxtal", progress=arguments["progress"]).output
    ids = arguments["ids"]
    keys = ("repeats", "seed", "num_mols", "criterion", "max_atoms", "min_distance", "rdkit_check", "split_mode")
    settings = {
        "source": name,
        "start": asdict(scheme),
        **{key: arguments[key] for key in keys},
        "split_seed": arguments["split_seed"],
        "fractions": list(arguments["fractions"]),
        "ids": sorted(ids) if ids is not None else None,
        "synthetic_per_molecule": arguments["synthetic_per_molecule"] if name == "pyxtal_random" else None,
    }
    fingerprint = real_fingerprint(input) if name == "real" else input_fingerprint(name, input)
    digest = settings_hash(settings, fingerprint)
    output = arguments["output"]
    output = Path(output) if output is not None else default_cache_root() / f"{name}_{digest}"
    limits = {key: arguments[key] for key in ("time_limit", "max_file_mb", "workers")}
    return _Plan(
        name, input, output, settings, scheme, digest, limits, ids, arguments["progress"], arguments["write_csv"]
    )


def _reused(plan: _Plan, force: bool) -> BuildReport | None:
    """The report of an up-to-date complete build of ``plan`` (None when forced or there is none)."""
    cached = None if force else _cached_report(plan.output, plan.digest)
    if cached is not None and plan.write_csv and not (plan.output / csv_layout.FINAL_DIR).exists():
        write_csv_layout(plan.output, open_clusters(plan.output))
    return cached


def _listed_entries(plan: _Plan) -> tuple[list[SourceEntry], list[Skipped]]:
    """The entries to build (only ``ids`` when given), or NoInputError with nothing written."""
    entries, skipped = _entries(plan.name, plan.input, plan.entry_settings)
    if plan.ids is not None:
        wanted = set(plan.ids)
        entries, skipped = [e for e in entries if e.entry_id in wanted], []
    if not entries:
        raise NoInputError(_no_input_message(plan.name, plan.input, plan.ids, skipped))
    return entries, skipped


def _build(plan: _Plan, entries: list[SourceEntry], skipped: list[Skipped], force: bool = False) -> BuildReport:
    """Run the batch (resuming from ``output/.parts`` unless ``force``) and write every output, even when interrupted."""
    started = time.perf_counter()
    plan.output.mkdir(parents=True, exist_ok=True)
    key = parts_key(plan.digest, [e.entry_id for e in entries])
    result = _BatchResult(parts=Parts(plan.output / PART_DIR, key, fresh=force))
    try:
        _run(entries, plan.entry_settings, plan.scheme, plan.limits, plan.output, plan.progress, result)
    finally:  # interrupted or not, write what was done (a partial build is marked incomplete)
        report = _finish(plan, entries, skipped, result, started)
    if report.complete:
        result.parts.remove()
    return report


def _no_input_message(name: str, input, ids: list[str] | None, skipped: list[Skipped]) -> str:
    if ids is not None:
        return f"{input or default_input(name)}: none of the {len(ids)} requested ids is an entry of source={name}"
    if name == "cif":
        others = ", ".join(s.name for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        held = f"it holds {len(skipped)} other entries ({others})" if skipped else "it is empty"
        return f"{input}: no CIF file (*.cif or *.mmcif, any case); {held}; nothing was written"
    return f"{input or default_input(name)}: source={name} lists no entry; nothing was written"


def _finish(
    plan: _Plan, entries: list[SourceEntry], skipped: list[Skipped], result: _BatchResult, started: float
) -> BuildReport:
    """Merge the parts in entry order into the container and write every other output."""
    if plan.name == "real":
        _drop_duplicates(entries, result)
    formulas, rejected = result.ordered()
    kept_clusters = result.parts.merge(plan.output / STORE_NAME, result.clusters)
    (plan.output / LEGACY_NAME).unlink(missing_ok=True)
    input_is_default = plan.input is None or Path(plan.input) == default_input(plan.name)
    sources = {kept.crystal_id: kept.source for kept in result.clusters.values()}
    splits = _splits_for(plan.name, input_is_default, formulas, plan.settings, sources)
    if result.complete:  # splits.json is written once: not from a partial build that will be resumed
        splits = _write_splits(plan.output, plan.name, splits)
    in_splits = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    report = BuildReport(
        plan.name,
        plan.output,
        len(formulas),
        kept_clusters,
        rejected,
        counts,
        time.perf_counter() - started,
        False,
        plan.digest,
        sorted(set(formulas) - in_splits),
        skipped,
        len(entries),
        result.complete,
        result.slowest(entries),
    )
    _write_rejections(plan.output, report)
    per_source = source_split_counts(_cluster_sources(result), splits)
    _write_manifest(plan.output, report, plan.settings, plan.input, formulas, plan.limits, per_source)
    if plan.write_csv:
        shutil.rmtree(plan.output / "raw", ignore_errors=True)
        write_csv_layout(plan.output, open_clusters(plan.output))
    return report


def _cluster_sources(result: _BatchResult) -> list[SimpleNamespace]:
    """``crystal_id`` and ``source`` of every kept cluster, in order, without reading the clusters."""
    records = []
    for index in sorted(result.clusters):
        kept = result.clusters[index]
        records += [SimpleNamespace(crystal_id=kept.crystal_id, source=kept.source)] * kept.count
    return records


def _drop_duplicates(entries: list[SourceEntry], result: _BatchResult) -> None:
    """Turn kept crystals that repeat one of an earlier collection into ``duplicate`` rejections."""
    order = {c.tag: rank for rank, c in enumerate(COLLECTIONS)}
    indices = sorted(result.clusters, key=lambda i: (order.get(entries[i].meta.get("source_tag"), len(order)), i))
    records = [
        CrystalRecord(
            result.clusters[i].crystal_id,
            str(entries[i].meta.get("source_tag")),
            result.clusters[i].formula,
            tuple(result.clusters[i].cell) if result.clusters[i].cell is not None else None,
            entries[i].meta.get("refcode"),
        )
        for i in indices
    ]
    duplicates = find_duplicates(records)
    for index in indices:
        detail = duplicates.get(result.clusters[index].crystal_id)
        if detail is not None:
            del result.clusters[index]
            result.rejected[index] = Rejection(entries[index].entry_id, "duplicate", detail)


def load_embedded_dataset(
    split: str | None = "train", start: str = "local", repeats: int = 1, progress: bool = False, **settings
) -> AssemblyDataset:
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
