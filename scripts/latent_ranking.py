"""The latent ranking (issue 23): LFM vs Fourier / PCA / db6 K-Flow on latent MNIST, FD against steps.

Every method x seed is ONE training run (``experiment=mnist_latent`` with the method's transform),
continued exactly with ``resume=true`` to each step count of the ladder (the constant learning
rate after warm-up and the EMA do not depend on ``train.steps``; the checkpoint holds the
optimizer, EMA, RNG and data position), and the EMA weights are scored at every step count::

    python scripts/train_autoencoder.py data=mnist          # once
    python scripts/latent_ranking.py run --root outputs/image/latent_ranking --seeds 0 --ladder 750 1500 3000
    python scripts/latent_ranking.py run --root outputs/image/latent_ranking --seeds 1 2 --ladder 1500 3000 --defer-ladder
    python scripts/latent_ranking.py score-snapshots --root outputs/image/latent_ranking --seeds 1 2 --steps 1500
    python scripts/latent_ranking.py noise-split --run outputs/image/latent_ranking/fourier/seed0
    python scripts/latent_ranking.py report --root outputs/image/latent_ranking     # figure + Markdown table

``run`` scores every ladder step with ``--ladder-samples`` samples (no CDR, no figures) and the last
step again with ``--final-samples`` (CDR for ``--cdr-seeds``, figures); with ``--defer-ladder`` the
earlier steps are kept as ``checkpoints/step<steps>.pt`` and scored later by ``score-snapshots`` (in a
scratch copy of the run folder; the same numbers as scoring on the way, checked), so the final
scores of every seed come first; each score is kept as
``<root>/<method>/seed<s>/metrics-<steps>steps-<n>samples.json`` and a finished score is skipped on
a rerun. Process CPU seconds of each stage go to ``<root>/stages.jsonl``. Extra ``key=value``
arguments after ``--`` are passed to every run (e.g. cache paths). ``report`` writes
``latent_fd_vs_steps.png`` and ``latent_ranking.md`` into ``--out`` (default: the root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from kflow.training import ConfigError

METHODS = {
    "lfm": ["transform=none", "transform.num_bands=1"],
    "fourier": ["transform=fourier", "transform.num_bands=2"],
    "pca": ["transform=pca", "transform.num_bands=2"],
    "db6": ["transform=wavelet", "transform.wavelet=db6", "transform.levels=1", "transform.num_bands=null"],
}
"""Method -> the ``train_image.py`` overrides on ``experiment=mnist_latent`` (K = 1 for LFM, K = 2 otherwise)."""


def stage_overrides(method: str, seed: int, steps: int, samples: int, final: bool, cdr: bool) -> list[str]:
    """The overrides of one scored step count of one method x seed."""
    return [
        "experiment=mnist_latent",
        *METHODS[method],
        f"train.seed={seed}",
        f"train.steps={steps}",
        "resume=true",
        "train.progress=false",
        f"sample.num_samples={samples}",
        f"eval.cdr={str(cdr and final).lower()}",
        f"figures={str(final).lower()}",
    ]


def run_stage(
    root: Path, folder: str, seed: int | None, steps: int, samples: int, final: bool, cdr: bool, extra, **run
) -> None:
    """Train ``folder`` (a method) x ``seed`` on to ``steps`` (resuming) and keep its metrics as a stage file.

    ``seed=None`` scores ``root/folder`` itself as method ``run["as_method"]``, seed ``run["as_seed"]``.
    """
    from kflow_image.cli import compose
    from kflow_image.config import ImageRunConfig
    from kflow_image.experiment import run_experiment

    run_dir = root / folder / f"seed{seed}" if seed is not None else root / folder
    method, seed = run.get("as_method", folder), run.get("as_seed", seed)
    target = run_dir / f"metrics-{steps}steps-{samples}samples.json"
    if target.is_file():
        print(f"[ranking] {target} exists: skipped", flush=True)
        return
    overrides = [*stage_overrides(method, seed, steps, samples, final, cdr), f"output_dir={run_dir}", *extra]
    cfg = compose("train_image", overrides, ImageRunConfig)
    print(f"[ranking] {method} seed {seed}: {steps} steps, {samples} samples", flush=True)
    cpu, wall = time.process_time(), time.perf_counter()
    metrics = run_experiment(cfg)
    shutil.copyfile(run_dir / "metrics.json", target)
    record = {
        "method": method,
        "seed": seed,
        "steps": steps,
        "samples": samples,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "fd": metrics.get("fd"),
        "accuracy": metrics.get("accuracy"),
    }
    with open(root / "stages.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(f"[ranking] {json.dumps(record)}", flush=True)


def snapshot(root: Path, method: str, seed: int, steps: int, extra) -> None:
    """Train on to ``steps`` without scoring and keep the checkpoint as ``checkpoints/step<steps>.pt``."""
    from kflow_image.cli import compose
    from kflow_image.config import ImageRunConfig
    from kflow_image.experiment import run_experiment

    run_dir = root / method / f"seed{seed}"
    kept = run_dir / "checkpoints" / f"step{steps}.pt"
    if kept.is_file() or any(run_dir.glob(f"metrics-{steps}steps-*samples.json")):
        return
    overrides = [*stage_overrides(method, seed, steps, 1, False, False), "eval.enabled=false"]
    cfg = compose("train_image", [*overrides, f"output_dir={run_dir}", *extra], ImageRunConfig)
    print(f"[ranking] {method} seed {seed}: {steps} steps (snapshot, scored later)", flush=True)
    run_experiment(cfg)
    shutil.copyfile(run_dir / "checkpoints" / "last.pt", kept)


def score_snapshot(root: Path, method: str, seed: int, steps: int, samples: int, extra) -> None:
    """Score ``checkpoints/step<steps>.pt`` in a scratch copy of the run folder (the run itself is untouched)."""
    run_dir = root / method / f"seed{seed}"
    kept = run_dir / "checkpoints" / f"step{steps}.pt"
    target = run_dir / f"metrics-{steps}steps-{samples}samples.json"
    if target.is_file() or not kept.is_file():
        return
    scratch = root / "_snapshots" / method / f"seed{seed}-step{steps}"
    (scratch / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, scratch / "checkpoints" / "last.pt")
    run_stage(scratch.parent, scratch.name, None, steps, samples, False, False, extra, as_method=method, as_seed=seed)
    shutil.copyfile(scratch / f"metrics-{steps}steps-{samples}samples.json", target)
    shutil.rmtree(scratch)


def run(args: argparse.Namespace) -> None:
    """Every seed x method x ladder step (seed-major, so the finished seeds are complete).

    With ``--defer-ladder`` the ladder steps before the last are only snapshotted (scored by
    ``score-snapshots``) and the last step is scored with the final samples only.
    """
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    ladder = sorted(args.ladder)
    for seed in args.seeds:
        for method in args.methods:
            for steps in ladder[:-1]:
                if args.defer_ladder:
                    snapshot(root, method, seed, steps, args.overrides)
                else:
                    run_stage(root, method, seed, steps, args.ladder_samples, False, False, args.overrides)
            cdr = seed in args.cdr_seeds  # the final score first, then the last ladder point (no training)
            run_stage(root, method, seed, ladder[-1], args.final_samples, True, cdr, args.overrides)
            if not args.defer_ladder:
                run_stage(root, method, seed, ladder[-1], args.ladder_samples, False, False, args.overrides)


def score_snapshots(args: argparse.Namespace) -> None:
    """Score every kept snapshot (``--steps``) and, with ``--last``, the last step of every run folder."""
    root = Path(args.root)
    for seed in args.seeds:
        for method in args.methods:
            for steps in args.steps:
                score_snapshot(root, method, seed, steps, args.samples, args.overrides)
            if args.last is not None and (root / method / f"seed{seed}" / "checkpoints" / "last.pt").is_file():
                run_stage(root, method, seed, args.last, args.samples, False, False, args.overrides)
    if (root / "_snapshots").is_dir() and not any((root / "_snapshots").rglob("*.pt")):
        shutil.rmtree(root / "_snapshots")


def noise_split(args: argparse.Namespace) -> None:
    """Feature distances of low-band-sharing, high-band-sharing and independent pairs of one run."""
    from kflow.stats import BootstrapCI, format_ci
    from kflow_image.experiment import feature_network, load_run, sampler_spec
    from kflow_image.steering import noise_split_distances, noise_split_summary

    run_dir = Path(args.run)
    loaded = load_run(run_dir)
    features = feature_network(loaded.config, loaded.splits, "cpu")
    sampler = sampler_spec(loaded.config.sample, loaded.path, loaded.data.train)
    distances = noise_split_distances(
        loaded.model,
        loaded.path,
        features,
        args.pairs,
        loaded.data.data_shape,
        num_classes=loaded.splits.num_classes,
        sampler=sampler,
        seed=args.seed,
        codec=loaded.codec,
    )
    summary = noise_split_summary(distances)
    summary.update(run=str(run_dir), pairs=args.pairs, seed=args.seed, feature_net=features.name)
    (run_dir / "noise_split.json").write_text(json.dumps(summary, indent=2))
    for key in ("share_low", "share_high"):
        print(f"{key} / independent: {format_ci(BootstrapCI(**summary[key + '_ratio_ci']), 1.0)}")
    print(f"wrote {run_dir / 'noise_split.json'}")


def report(args: argparse.Namespace) -> None:
    """The FD-vs-steps figure and the Markdown tables from the run folders under ``--root``."""
    from kflow_image.ranking import collect_scores, markdown_report, plot_fd_vs_steps

    root = Path(args.root)
    scores = collect_scores(root)
    if not scores:
        raise ConfigError(f"--root {root}: no metrics-<steps>steps-<n>samples.json under <method>/seed<s>/")
    out = Path(args.out or root)
    out.mkdir(parents=True, exist_ok=True)
    plot_fd_vs_steps(scores, out / "latent_fd_vs_steps.png", baseline="lfm")
    text = markdown_report(scores, baseline="lfm")
    (out / "latent_ranking.md").write_text(text)
    print(text)
    print(f"wrote {out / 'latent_fd_vs_steps.png'} and {out / 'latent_ranking.md'}")


def parse(argv: list[str]) -> argparse.Namespace:
    """Command line: ``run``, ``noise-split`` or ``report`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="latent_ranking.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="train and score the ladder")
    p.add_argument("--root", default="outputs/image/latent_ranking")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ladder", nargs="+", type=int, default=[750, 1500, 3000])
    p.add_argument("--ladder-samples", type=int, default=1000)
    p.add_argument("--final-samples", type=int, default=2000)
    p.add_argument("--cdr-seeds", nargs="*", type=int, default=[0])
    p.add_argument("--defer-ladder", action="store_true", help="snapshot the earlier ladder steps, score later")
    p.add_argument("overrides", nargs="*", help="extra key=value for every run (after --)")
    p = sub.add_parser("score-snapshots", help="score the snapshots kept by run --defer-ladder")
    p.add_argument("--root", default="outputs/image/latent_ranking")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", nargs="*", type=int, default=[1500])
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--last", type=int, default=None, help="also score the last step (the runs' step count)")
    p.add_argument("overrides", nargs="*", help="extra key=value for every run (after --)")
    p = sub.add_parser("noise-split", help="pair distances in feature space for one run")
    p.add_argument("--run", required=True)
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("report", help="figure and tables")
    p.add_argument("--root", default="outputs/image/latent_ranking")
    p.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.command == "run" and (min(args.ladder) < 1 or args.final_samples < 1 or args.ladder_samples < 1):
        parser.error("--ladder steps and sample counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        {"run": run, "score-snapshots": score_snapshots, "noise-split": noise_split, "report": report}[args.command](
            args
        )
    except (ConfigError, FileNotFoundError) as err:
        print(f"latent_ranking.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
