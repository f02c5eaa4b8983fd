"""Figures without pyplot: no global backend switch, safe in notebooks and worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def new_figure(figsize: tuple[float, float] = (4.5, 3.2)) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` on its own Agg canvas and one ``Axes`` (matplotlib imported lazily)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def save_figure(figure: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Lay out and write ``figure`` to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    return path
