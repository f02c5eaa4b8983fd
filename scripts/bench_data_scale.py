"""Scale benchmark of data preparation and training input, projected to COD-Cluster17-All (~133K clusters).

    python scripts/bench_data_scale.py --sizes 1000 5000 --out outputs/bench_data_scale
    python scripts/bench_data_scale.py --sizes 1000 5000 20000 --train-steps 40

Generates data sets in the published COD-Cluster17 CSV layout (``raw/FinalPositions``,
``raw/InitialPositions``) from the real clusters of a prepared ``data=real`` cache, each
crystal cluster reused with many fresh start states (a random rotation of every molecule about
its centroid and a 3 Å Gaussian shift), written under ``--out`` (git-ignored ``outputs/``;
never commit them). Smaller sets are hard links to the first files of the largest one.

For each size it measures, in subprocesses of the real scripts:

* ``scripts/prepare_assembly_data.py source=cod_cluster17`` with 1 and 2 workers: wall time,
  process CPU (the script and its workers), peak RSS (largest process, and the process tree);
* the cache size on disk;
* ``scripts/train_assembly.py data=prepared`` with ``train.num_workers`` 0 and 2: time from the
  command to the first optimizer step (first row of ``train_log.csv``), training clusters/s
  after it, peak RSS.

Each metric gets its growth exponent between the two largest sizes (d log value / d log N: 1 is
linear, 0 flat) and a projection to 133K clusters, linear in N from those two sizes (a fixed
cost plus a cost per cluster; rates through the time they imply). Results: ``<out>/results.json`` and a
markdown table on stdout (the one in docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET = 133_000
PYTHON = sys.executable


def source_clusters(folder: Path | None) -> list:
    """The real clusters the sets are made of (a prepared folder; default: the newest data=real cache)."""
    from kflow_mol.data.dataset import LEGACY_NAME, load_clusters_legacy, open_clusters

    if folder is None:
        caches = sorted((REPO / "data" / "cache").glob("real_*"), key=lambda p: p.stat().st_mtime)
        if not caches:
            sys.exit("bench_data_scale: no data/cache/real_* (run scripts/prepare_assembly_data.py source=real)")
        folder = caches[-1]
    if (folder / LEGACY_NAME).exists():  # read a former cache as it is: do not migrate a shared folder
        return load_clusters_legacy(folder / LEGACY_NAME)
    return list(open_clusters(folder))


def fresh_start(cluster, rng: np.random.Generator, shift: float = 3.0) -> np.ndarray:
    """A new rigid start state of a cluster: each molecule rotated about its centroid and shifted.

    Returns:
        (A, 3) float64 start coordinates.
    """
    from scipy.spatial.transform import Rotation

    target = cluster.pos_target.double().numpy()
    mol = cluster.mol_index.numpy()
    num_mols = int(mol.max()) + 1
    centroids = np.stack([target[mol == m].mean(0) for m in range(num_mols)])
    rotations = Rotation.random(num_mols, random_state=rng).as_matrix()
    moved = centroids + rng.normal(0.0, shift, size=(num_mols, 3))
    return np.einsum("aij,aj->ai", rotations[mol], target - centroids[mol]) + moved[mol]


def generate(folder: Path, count: int, clusters: list, seed: int = 0) -> float:
    """Write ``count`` clusters in the CSV layout (ids ``<cluster>_s<k>``); returns seconds (0 if present)."""
    from kflow_mol.data import cod_cluster17 as layout

    done = folder / "complete.json"
    if done.exists() and json.loads(done.read_text())["count"] == count:
        return 0.0
    started = time.perf_counter()
    for k in range(count):
        base = clusters[k % len(clusters)]
        start = fresh_start(base, np.random.default_rng([seed, k]))
        cid = f"{base.cluster_id}_s{k:06d}"
        target = base.pos_target.double().numpy()
        layout.write_cluster_pair(folder, cid, base.z.numpy(), base.mol_index.numpy(), start, target)
    done.write_text(json.dumps({"count": count}))
    return time.perf_counter() - started


def linked_subset(source: Path, folder: Path, count: int) -> None:
    """``folder`` holds hard links to the first ``count`` clusters of ``source`` (sorted ids)."""
    from kflow_mol.data import cod_cluster17 as layout

    if (folder / "complete.json").exists():
        return
    for cid in layout.list_cluster_ids(source)[:count]:
        for path in (layout.final_path, layout.initial_path):
            target = path(folder, cid)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(path(source, cid), target)
    (folder / "complete.json").write_text(json.dumps({"count": count}))


def measured(command: list[str], first_row: Path | None = None) -> dict:
    """Run a command; wall s, CPU s (it and its children), peak RSS (largest process, tree), first-row s."""
    import psutil

    before = os.times()
    started = time.perf_counter()
    log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty command must not block on a full buffer
    proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    main, peak_main, peak_tree, first = psutil.Process(proc.pid), 0, 0, None
    while proc.poll() is None:
        try:
            tree = [main, *main.children(recursive=True)]
            rss = [p.memory_info().rss for p in tree]
            peak_main, peak_tree = max(peak_main, rss[0]), max(peak_tree, sum(rss))
        except psutil.Error:
            pass
        if first is None and first_row is not None and first_row.exists() and first_row.read_text().count("\n") >= 2:
            first = time.perf_counter() - started
        time.sleep(0.05)
    log.seek(0)
    output = log.read()
    after = os.times()
    if proc.returncode:
        sys.exit(f"bench_data_scale: {' '.join(command)} failed ({proc.returncode}):\n{output[-3000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": cpu,
        "peak_rss_mb": peak_main / 1e6,
        "peak_tree_rss_mb": peak_tree / 1e6,
        "first_row_s": first,
    }


def prepare(csv_folder: Path, output: Path, workers: int) -> dict:
    """Prepare a CSV-layout folder (forced rebuild, no CSV copy) and measure it."""
    command = [
        PYTHON,
        "scripts/prepare_assembly_data.py",
        "source=cod_cluster17",
        f"input={csv_folder}",
        f"output={output}",
        f"workers={workers}",
        "write_csv=false",
        "progress=false",
        "force=true",
    ]
    result = measured(command)
    manifest = json.loads((output / "manifest.json").read_text())
    result["clusters"] = manifest["kept_clusters"]
    result["clusters_per_s"] = manifest["kept_clusters"] / result["wall_s"]
    result["cache_mb"] = sum(p.stat().st_size for p in output.rglob("*") if p.is_file()) / 1e6
    result["store_mb"] = (output / "clusters.safetensors").stat().st_size / 1e6
    return result


def train(data_folder: Path, run: Path, workers: int, steps: int, batch_size: int) -> dict:
    """A short training run on a prepared folder; time to the first step, clusters/s, peak RSS."""
    command = [
        PYTHON,
        "scripts/train_assembly.py",
        "data=prepared",
        f"data.folder={data_folder}",
        f"output_dir={run}",
        f"train.steps={steps}",
        f"train.batch_size={batch_size}",
        f"train.num_workers={workers}",
        f"train.ckpt_every={steps}",
        "train.val_every=null",
        "train.log_every=1",
        "train.progress=false",
        "data.max_test=2",
        "sample.steps=2",
        "sample.batch_size=2",
        "eval.rmsd=false",
        "device=cpu",
    ]
    log = run / "train_log.csv"
    log.unlink(missing_ok=True)
    result = measured(command, first_row=log)
    rows = [line.split(",") for line in log.read_text().splitlines()]
    wall = [float(r[rows[0].index("wall_s")]) for r in rows[1:]]
    result["first_step_s"] = result.pop("first_row_s")
    result["clusters_per_s"] = (len(wall) - 1) * batch_size / max(wall[-1] - wall[0], 1e-9)
    return result


def projection(sizes: list[int], values: list[float], rate: bool = False) -> tuple[float, float]:
    """(growth exponent d log v / d log N between the two largest sizes, value projected to 133K).

    Totals (seconds, MB) are extrapolated linearly from the two largest sizes (fixed cost + cost
    per cluster); a rate (``*_per_s``) through the time it implies (N / rate).
    """
    (n0, v0), (n1, v1) = (sizes[-2], values[-2]), (sizes[-1], values[-1])
    slope = math.log(max(v1, 1e-9) / max(v0, 1e-9)) / math.log(n1 / n0)
    if rate:
        t0, t1 = n0 / v0, n1 / v1
        return slope, TARGET / max(t1 + (t1 - t0) / (n1 - n0) * (TARGET - n1), 1e-9)
    return slope, max(v1 + (v1 - v0) / (n1 - n0) * (TARGET - n1), 0.0)


METRICS = (
    ("prepare_w1", "wall_s", "preparation wall, 1 worker (s)"),
    ("prepare_w1", "cpu_s", "preparation CPU, 1 worker (s)"),
    ("prepare_w2", "wall_s", "preparation wall, 2 workers (s)"),
    ("prepare_w2", "cpu_s", "preparation CPU, 2 workers (s)"),
    ("prepare_w2", "clusters_per_s", "preparation clusters/s, 2 workers"),
    ("prepare_w2", "peak_rss_mb", "preparation peak RSS, main process (MB)"),
    ("prepare_w2", "peak_tree_rss_mb", "preparation peak RSS, process tree (MB)"),
    ("prepare_w1", "store_mb", "cache: clusters.safetensors (MB)"),
    ("prepare_w1", "cache_mb", "cache folder (MB)"),
    ("train_w0", "first_step_s", "command -> first optimizer step, 0 workers (s)"),
    ("train_w0", "peak_rss_mb", "training peak RSS, 0 workers (MB)"),
    ("train_w0", "clusters_per_s", "training clusters/s, 0 workers"),
    ("train_w2", "first_step_s", "command -> first optimizer step, 2 workers (s)"),
    ("train_w2", "peak_tree_rss_mb", "training peak RSS tree, 2 workers (MB)"),
    ("train_w2", "clusters_per_s", "training clusters/s, 2 workers"),
)


def table(results: dict) -> str:
    """Markdown: one row per metric, one column per size, growth exponent and 133K projection."""
    sizes = sorted(int(n) for n in results)
    head = "| metric | " + " | ".join(f"{n:,}" for n in sizes) + " | growth exp. | projected 133K |"
    lines = [head, "|" + "---|" * (len(sizes) + 3)]
    for group, key, label in METRICS:
        values = [results[str(n)].get(group, {}).get(key) for n in sizes]
        if any(v is None for v in values):
            continue
        rate = key.endswith("per_s")
        slope, projected = projection(sizes, values, rate) if len(sizes) > 1 else (float("nan"), float("nan"))
        cells = " | ".join(f"{v:,.1f}" for v in values)
        lines.append(f"| {label} | {cells} | {slope:.2f} | {projected:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_data_scale")
    parser.add_argument("--source", type=Path, default=None, help="prepared folder of real clusters")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="print the table of <out>/results.json")
    args = parser.parse_args(argv)
    out, sizes = args.out.resolve(), sorted(args.sizes)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if not args.table_only:
        out.mkdir(parents=True, exist_ok=True)
        clusters = source_clusters(args.source)
        largest = out / f"csv_{sizes[-1]}"
        print(f"generating {sizes[-1]} clusters from {len(clusters)} real ones ...", file=sys.stderr, flush=True)
        generate_s = generate(largest, sizes[-1], clusters)
        for n in sizes:
            results[str(n)] = run_size(out, largest, n, args, generate_s if n == sizes[-1] else None)
            results_path.write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


def run_size(out: Path, largest: Path, n: int, args, generate_s: float | None) -> dict:
    """Every measurement of one size (prepared caches kept under ``out``)."""
    csv_folder = out / f"csv_{n}"
    if csv_folder != largest:
        linked_subset(largest, csv_folder, n)
    record: dict = {"generate_s": generate_s}
    for workers in (1, 2):
        print(f"{n}: prepare, {workers} worker(s) ...", file=sys.stderr, flush=True)
        record[f"prepare_w{workers}"] = prepare(csv_folder, out / f"prepared_{n}_w{workers}", workers)
    if not args.skip_train:
        for workers in (0, 2):
            print(f"{n}: train, {workers} DataLoader worker(s) ...", file=sys.stderr, flush=True)
            run = out / f"run_{n}_w{workers}"
            record[f"train_w{workers}"] = train(
                out / f"prepared_{n}_w1", run, workers, args.train_steps, args.batch_size
            )
    print(json.dumps({n: record}), file=sys.stderr, flush=True)
    return record


if __name__ == "__main__":
    sys.exit(main())
