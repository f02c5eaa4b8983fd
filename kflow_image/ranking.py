"""Ranking methods by FD over training steps and seeds (the latent ranking of issue 23).

Reads the stage files that ``scripts/latent_ranking.py run`` writes,
``<root>/<method>/seed<s>/metrics-<steps>steps-<n>samples.json`` (``metrics.json`` of the run's
EMA weights at ``steps`` optimizer steps, scored with ``n`` samples), and turns them into the
FD-vs-steps figure, the per-step ranking and the seed table with paired intervals against a
baseline (the same seeds; :func:`kflow.stats.paired_difference_ci` and a Student-t interval).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STAGE_FILE = re.compile(r"metrics-(\d+)steps-(\d+)samples\.json")
"""Name of one scored step count: ``metrics-<steps>steps-<samples>samples.json``."""


@dataclass(frozen=True)
class Score:
    """One method x seed scored at one step count.

    Attributes:
        method: folder name under the root (``lfm``, ``fourier``, ...).
        seed: training seed (``seed<s>`` folder).
        steps: optimizer steps of the scored EMA weights.
        samples: number of class-balanced samples scored.
        fd: FD on the feature CNN's features; ``fd_low`` / ``fd_high`` its bootstrap CI over samples.
        accuracy: feature-CNN agreement with the requested class (``nan`` if absent).
        recall: recall of the samples on the feature CNN's features (``nan`` if absent).
        cdr: class-drop ratio (``nan`` when not measured).
        floor: FD of real held-out images at the same number of items (``nan`` if absent).
    """

    method: str
    seed: int
    steps: int
    samples: int
    fd: float
    fd_low: float
    fd_high: float
    accuracy: float
    recall: float
    cdr: float
    floor: float


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def collect_scores(root: str | Path) -> list[Score]:
    """Every stage file under ``root/<method>/seed<s>/``, sorted by method, seed, steps, samples."""
    scores = []
    for path in Path(root).glob("*/seed*/metrics-*steps-*samples.json"):
        match, seed = STAGE_FILE.fullmatch(path.name), path.parent.name[4:]
        if match is None or not seed.isdigit():
            continue
        m = json.loads(path.read_text())
        floor = (m.get("reference_floor") or {}).get("fd")
        scores.append(
            Score(
                method=path.parent.parent.name,
                seed=int(seed),
                steps=int(match[1]),
                samples=int(match[2]),
                fd=_number(m.get("fd")),
                fd_low=_number(m.get("fd_ci_low")),
                fd_high=_number(m.get("fd_ci_high")),
                accuracy=_number(m.get("accuracy")),
                recall=_number(m.get("recall")),
                cdr=_number(m.get("cdr")),
                floor=_number(floor),
            )
        )
    return sorted(scores, key=lambda s: (s.method, s.seed, s.steps, s.samples))


def select(scores: Sequence[Score], steps: int, samples: int) -> dict[str, dict[int, Score]]:
    """``method -> seed -> Score`` at ``steps`` and ``samples``."""
    out: dict[str, dict[int, Score]] = {}
    for s in scores:
        if s.steps == steps and s.samples == samples:
            out.setdefault(s.method, {})[s.seed] = s
    return out


def ladder(scores: Sequence[Score], samples: int) -> list[int]:
    """Step counts scored with ``samples`` samples, ascending."""
    return sorted({s.steps for s in scores if s.samples == samples})


def ranking_at(scores: Sequence[Score], steps: int, samples: int) -> list[str]:
    """Methods by mean FD (best first) over the seeds that every method has at this step count."""
    table = select(scores, steps, samples)
    common = set.intersection(*(set(by_seed) for by_seed in table.values())) if table else set()
    if not common:
        return []
    mean = {m: statistics.fmean(by_seed[s].fd for s in common) for m, by_seed in table.items()}
    return sorted(mean, key=mean.get)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (``nan`` bounds for fewer than 2 values)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean, half = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    q = float(t.ppf(0.5 + level / 2, n - 1))
    return mean - q * half, mean + q * half


def seed_rows(scores: Sequence[Score], steps: int, samples: int, baseline: str) -> list[dict]:
    """One row per method: FD / accuracy mean and std over seeds, CDR, and FD minus the baseline's.

    The difference is paired by seed over the seeds both have: its mean, the bootstrap interval
    of :func:`kflow.stats.paired_difference_ci` and a Student-t interval (3 seeds make the
    bootstrap interval too narrow; the t interval is the honest one).
    """
    from kflow.stats import paired_difference_ci

    table = select(scores, steps, samples)
    rows = []
    for method, by_seed in sorted(table.items(), key=lambda item: (item[0] != baseline, item[0])):
        fds = [s.fd for s in by_seed.values()]
        accs = [s.accuracy for s in by_seed.values()]
        cdrs = {seed: s.cdr for seed, s in by_seed.items() if math.isfinite(s.cdr)}
        row = dict(method=method, seeds=sorted(by_seed), fd=fds, acc=accs, cdr=cdrs)
        row.update(recall=[s.recall for s in by_seed.values()])
        row.update(floor=statistics.fmean(s.floor for s in by_seed.values()))
        shared = sorted(set(by_seed) & set(table.get(baseline, {})))
        if method != baseline and len(shared) >= 2:
            diff = [by_seed[s].fd - table[baseline][s].fd for s in shared]
            boot = paired_difference_ci(
                [by_seed[s].fd for s in shared], [table[baseline][s].fd for s in shared], num_resamples=2000
            )
            row.update(diff=diff, diff_boot=(boot.low, boot.high), diff_t=t_interval(diff))
        rows.append(row)
    return rows


def _pm(values: Sequence[float], digits: int) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def seed_table(scores: Sequence[Score], steps: int, samples: int, baseline: str) -> str:
    """The Markdown seed table at ``steps`` / ``samples`` (see :func:`seed_rows`)."""
    lines = [
        f"| method | seeds | FD ↓ (mean ± std) | FD − {baseline} [95% t-CI] | [bootstrap CI] | per-seed FD | "
        "accuracy ↑ | recall ↑ | CDR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in seed_rows(scores, steps, samples, baseline):
        diff = "–"
        boot = "–"
        if "diff" in r:
            diff = f"{statistics.fmean(r['diff']):+.2f} [{r['diff_t'][0]:+.2f}, {r['diff_t'][1]:+.2f}]"
            boot = f"[{r['diff_boot'][0]:+.2f}, {r['diff_boot'][1]:+.2f}]"
        per_seed = ", ".join(f"{v:.2f}" for v in r["fd"])
        cdr = ", ".join(f"{v:.2f} (seed {s})" for s, v in r["cdr"].items()) or "–"
        seeds = ",".join(str(s) for s in r["seeds"])
        lines.append(
            f"| {r['method']} | {seeds} | {_pm(r['fd'], 2)} | {diff} | {boot} | {per_seed} | "
            f"{_pm(r['acc'], 3)} | {_pm(r['recall'], 3)} | {cdr} |"
        )
    return "\n".join(lines) + "\n"


def ladder_table(scores: Sequence[Score], samples: int) -> str:
    """Markdown: FD mean ± std over the seeds scored at each step count (``samples`` samples) and the ranking."""
    steps = ladder(scores, samples)
    methods = sorted({s.method for s in scores})
    lines = ["| method | " + " | ".join(f"{n} steps" for n in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for method in methods:
        cells = []
        for n in steps:
            by_seed = select(scores, n, samples).get(method, {})
            cells.append(f"{_pm([s.fd for s in by_seed.values()], 2)} (n={len(by_seed)})" if by_seed else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    order = [" < ".join(ranking_at(scores, n, samples)) or "–" for n in steps]
    lines.append("| ranking (best first, common seeds) | " + " | ".join(order) + " |")
    return "\n".join(lines) + "\n"


def ranking_stable(scores: Sequence[Score], samples: int) -> bool | None:
    """Whether the ranking at the last two step counts is the same (``None`` with fewer than two)."""
    steps = ladder(scores, samples)
    if len(steps) < 2:
        return None
    return ranking_at(scores, steps[-2], samples) == ranking_at(scores, steps[-1], samples)


def markdown_report(scores: Sequence[Score], baseline: str = "lfm") -> str:
    """The seed table at the largest step count and sample count, the ladder table and the stability verdict."""
    final_steps = max(s.steps for s in scores)
    final_samples = max(s.samples for s in scores if s.steps == final_steps)
    ladder_samples = min(s.samples for s in scores)
    stable = ranking_stable(scores, ladder_samples)
    last_two = " and ".join(str(n) for n in ladder(scores, ladder_samples)[-2:])
    verdict = {
        True: f"unchanged (the same order at {last_two} steps)",
        False: f"changed (a different order at {last_two} steps)",
        None: "not known (one step count)",
    }[stable]
    floors = [s.floor for s in scores if s.samples == final_samples and math.isfinite(s.floor)]
    floor = f"{statistics.fmean(floors):.2f}" if floors else "–"
    best = ", ".join(
        f"{(ranking_at(scores, n, ladder_samples) or ['–'])[0]} at {n}" for n in ladder(scores, ladder_samples)
    )
    return (
        f"### Seeds at {final_steps} steps, {final_samples} samples each\n\n"
        + seed_table(scores, final_steps, final_samples, baseline)
        + f"\nFD of real held-out images at the same N (floor): {floor}.\n"
        + f"\n### FD against steps ({ladder_samples} samples per score)\n\n"
        + ladder_table(scores, ladder_samples)
        + f"\nRanking between the last two step counts: **{verdict}**. Best: {best} steps.\n"
    )


def _plot_metric(ax, scores: Sequence[Score], samples: int, key: str, baseline: str, last: int = 0) -> None:
    """One line per method of ``key`` (mean ± std over seeds, seeds as dots) against the ladder's steps
    (the ``last`` step counts only when > 0)."""
    steps = ladder(scores, samples)[-last if last else 0 :]
    for method in sorted({s.method for s in scores}, key=lambda m: (m != baseline, m)):
        per_step = {n: [getattr(s, key) for s in select(scores, n, samples).get(method, {}).values()] for n in steps}
        per_step = {n: values for n, values in per_step.items() if values}
        means = [statistics.fmean(values) for values in per_step.values()]
        stds = [statistics.stdev(values) if len(values) > 1 else 0.0 for values in per_step.values()]
        style = "--" if method == baseline else "-"
        bars = ax.errorbar(list(per_step), means, yerr=stds, fmt=style + "o", capsize=3, label=method)
        for n, values in per_step.items():
            ax.scatter([n] * len(values), values, s=8, alpha=0.35, color=bars[0].get_color())
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(steps, [str(n) for n in steps])
    ax.set_xlabel("training steps (EMA weights)")


def plot_fd_vs_steps(scores: Sequence[Score], out: str | Path, baseline: str = "lfm") -> Path:
    """FD, FD at the last two step counts, and class accuracy (mean ± std over seeds, seeds as dots)
    against training steps, one line per method.

    Uses the scores with the smallest sample count (the ladder's); the dotted line is the FD of
    real held-out images at that count.
    """
    from kflow.plotting import new_figure, save_figure

    samples = min(s.samples for s in scores)
    figure, _ = new_figure((14.0, 4.2))
    figure.clear()
    fd_ax, zoom_ax, acc_ax = figure.subplots(1, 3)
    _plot_metric(fd_ax, scores, samples, "fd", baseline)
    floors = [s.floor for s in scores if s.samples == samples and math.isfinite(s.floor)]
    if floors:
        fd_ax.axhline(statistics.fmean(floors), color="gray", lw=0.8, ls=":", label="real held-out (floor)")
    fd_ax.set_ylabel(f"FD on feature-CNN features ({samples} samples)")
    fd_ax.set_title("FD ↓ (mean ± std over seeds)")
    fd_ax.legend(fontsize=8)
    _plot_metric(zoom_ax, scores, samples, "fd", baseline, last=2)
    zoom_ax.set_ylabel("FD")
    zoom_ax.set_title("FD ↓, the last two step counts")
    _plot_metric(acc_ax, scores, samples, "accuracy", baseline)
    acc_ax.set_ylabel("class accuracy of samples (feature CNN)")
    acc_ax.set_title("class accuracy ↑")
    acc_ax.legend(fontsize=8)
    figure.suptitle("Latent MNIST, DiT-T/2: K-Flow vs LFM against training steps")
    return save_figure(figure, out)
