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


def scaling_chart(
    points: Mapping[float, Mapping[str, Mapping[str, float]]],
    path: str | Path,
    metrics: tuple[str, ...] = ("pm_atom", "pm_center", "orientation_median_deg"),
    x_label: str = "training clusters",
    title: str = "",
) -> Path:
    """One panel per metric: each method's pooled test mean against a scale (clusters, parameters).

    Args:
        points: ``{x: {method: {metric: value}}}`` (e.g. :func:`kflow_mol.benchmark.report.pooled_means`
            of one benchmark run per training-set size).
        path: output PNG.
        metrics: the panels.
        x_label: what ``x`` is (log scale).
        title: figure title.

    Returns:
        The path written.
    """
    labels = {
        "pm_atom": "PM-atom (Å)",
        "pm_center": "PM-center (Å)",
        "orientation_median_deg": "orientation median (°)",
    }
    xs = sorted(points)
    methods = sorted({m for x in xs for m in points[x]})
    fig, _ = new_figure(figsize=(3.4 * len(metrics), 3.2))
    fig.clear()
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for method in methods:
            pairs = [(x, points[x][method][metric]) for x in xs if metric in points[x].get(method, {})]
            style = dict(linestyle="--", color="grey") if method == "identity" else {}
            ax.plot(*zip(*pairs), marker="o", label=method, **style)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel(x_label)
        ax.set_ylabel(labels.get(metric, metric))
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"Pooled test means against {x_label}")
    return save_figure(fig, path)
