"""Figures of the assembly runs (matplotlib imported lazily, no pyplot)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kflow.plotting import new_figure, save_figure


def pm_bar_chart(
    summary: Mapping[str, Mapping[str, float]],
    path: str | Path,
    metrics: tuple[str, ...] = ("pm_atom", "pm_center"),
    title: str = "",
) -> Path:
    """Grouped bars of PM metrics (mean with std error bars) per method.

    Args:
        summary: ``{method: {"pm_atom": mean, "pm_atom_std": std, ...}}``.
        path: output PNG.
        metrics: which metrics to plot.
        title: figure title.

    Returns:
        The path written.
    """
    methods = list(summary)
    width = 0.8 / max(len(methods), 1)
    fig, ax = new_figure(figsize=(1.8 + 1.6 * len(metrics) * max(len(methods), 1) ** 0.5, 3.6))
    for i, method in enumerate(methods):
        values = [summary[method].get(m, float("nan")) for m in metrics]
        errors = [summary[method].get(f"{m}_std", 0.0) for m in metrics]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(metrics))]
        bars = ax.bar(xs, values, width, yerr=errors, capsize=3, label=method)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    labels = {"pm_atom": "PM-atom", "pm_center": "PM-center", "rmsd_17": "RMSD_17"}
    ax.set_xticks(range(len(metrics)), [labels.get(m, m) for m in metrics])
    ax.set_ylabel("Å (lower is better)")
    ax.set_title(title or "Packing Matching on the test split")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
