"""CSV training log and the loss-curve plot (matplotlib imported lazily, Agg canvas)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path


class CSVLogger:
    """Appends rows of scalars to a CSV file, flushing each row (a killed run keeps its log).

    New keys in later rows widen the header (the file is rewritten once when that happens).

    Args:
        path: The CSV file.
        rows: Rows already logged (e.g. kept from a resumed run); the file is rewritten to them.
    """

    def __init__(self, path: str | os.PathLike, rows: Iterable[Mapping[str, float]] = ()):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, float]] = [dict(r) for r in rows]
        self.fieldnames: list[str] = []
        for row in self.rows:
            self._add_fields(row)
        self._rewrite()

    def _add_fields(self, row: Mapping[str, float]) -> bool:
        new = [k for k in row if k not in self.fieldnames]
        self.fieldnames.extend(new)
        return bool(new)

    def _rewrite(self) -> None:
        with open(self.path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.fieldnames)
            if self.fieldnames:
                writer.writeheader()
            writer.writerows(self.rows)

    def log(self, row: Mapping[str, float]) -> None:
        row = dict(row)
        self.rows.append(row)
        if self._add_fields(row):
            self._rewrite()
            return
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=self.fieldnames).writerow(row)


def read_csv_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a CSV log as dicts of floats (empty cells are dropped)."""
    with open(path, newline="") as file:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]


def plot_loss_curve(
    csv_path: str | os.PathLike, png_path: str | os.PathLike, keys: Iterable[str] = ("loss",), x_key: str = "step"
) -> Path:
    """Plot columns of a CSV log against `x_key` into a PNG (log y-axis when all positive)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_csv_log(csv_path)
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    positive = True
    for key in keys:
        points = [(r[x_key], r[key]) for r in rows if key in r and x_key in r]
        if not points:
            continue
        xs, ys = zip(*points)
        positive &= min(ys) > 0
        axis.plot(xs, ys, label=key)
    if axis.lines and positive:
        axis.set_yscale("log")
    axis.set_xlabel(x_key)
    axis.set_ylabel("value")
    if axis.lines:
        axis.legend()
    axis.grid(alpha=0.3)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.95)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path, dpi=100)
    return png_path
