"""Figures: sample grids (PNG), radial power spectra, band energy along k."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from kflow.plotting import new_figure, save_figure
from kflow.transforms.bands import band_energy
from kflow.transforms.base import KTransform
from kflow_image.metrics import radial_power_spectrum


def image_grid(images: torch.Tensor, nrow: int = 10, padding: int = 1) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [-1, 1] into a uint8 array ``(rows*(H+p)+p, nrow*(W+p)+p, C)``."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), 255, dtype=np.uint8)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


MAX_GRID_SIDE = 2048
"""Largest side (pixels) of a saved grid: larger sets show their first rows and columns only."""


def grid_subset(images: torch.Tensor, nrow: int, max_side: int = MAX_GRID_SIDE) -> tuple[torch.Tensor, int, int, int]:
    """The first rows and columns of a grid that fit ``max_side`` pixels at scale 1.

    Args:
        images: ``(N, C, H, W)`` tiles, row-major with ``nrow`` per row.
        nrow: tiles per row.
        max_side: pixel budget of each side (1-pixel padding included).

    Returns:
        ``(tiles, columns, rows, N)``: the kept tiles (row-major), how many columns and rows
        were kept, and how many tiles there were.
    """
    n, _, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    cols_fit, rows_fit = max(1, (max_side - 1) // (w + 1)), max(1, (max_side - 1) // (h + 1))
    cols, keep_rows = min(nrow, cols_fit), min(rows, rows_fit)
    index = [r * nrow + c for r in range(keep_rows) for c in range(cols) if r * nrow + c < n]
    return images[index], cols, keep_rows, n


def save_sample_array(images: torch.Tensor, labels: torch.Tensor | None, path: str | Path) -> Path:
    """All samples as ``.npz``: ``images`` uint8 ``(N, H, W, C)`` and ``labels`` ``(N,)`` (-1 if none)."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    label_array = np.full(len(images), -1) if labels is None else labels.cpu().numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=pixels, labels=label_array)
    return path


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    nrow: int = 10,
    upscale: int = 4,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    max_side: int = MAX_GRID_SIDE,
) -> Path:
    """Write ``(N, C, H, W)`` images in [-1, 1] as a PNG grid, nearest-upscaled by ``upscale``.

    The PNG's sides stay within ``max_side`` (plus the label margins): the upscale is lowered
    first, then only the first rows and columns that fit are drawn (:func:`grid_subset`; the
    title says so; save the full set with :func:`save_sample_array`). Column labels wider than
    a tile are staggered on two lines instead of being cut.

    Args:
        images: the tiles, row-major.
        path: output PNG.
        nrow: tiles per row.
        upscale: nearest-neighbour magnification (lowered to fit ``max_side``).
        row_labels: one text per row, written in a left margin (e.g. ``class 3``).
        col_labels: one text per column, written in a top margin (e.g. ``k=1.50``).
        title: a line above everything (e.g. what the rows and columns vary).
        max_side: largest side of the tile area in pixels.
    """
    from PIL import Image, ImageFont

    images, nrow, rows, total = grid_subset(images, nrow, max_side)
    if len(images) < total:
        title = f"{title + ' - ' if title else ''}first {rows} x {nrow} of {total}"
        row_labels = list(row_labels)[:rows] if row_labels else row_labels
        col_labels = list(col_labels)[:nrow] if col_labels else col_labels
    grid = image_grid(images, nrow)
    upscale = max(1, min(upscale, max_side // grid.shape[0], max_side // grid.shape[1]))
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    img = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode=mode)
    img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    if row_labels or col_labels or title:
        font = ImageFont.load_default()
        tile = ((images.shape[-2] + 1) * upscale, (images.shape[-1] + 1) * upscale)
        img = _label_margins(img, mode, font, tile, row_labels, col_labels, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _label_margins(img, mode: str, font, tile: tuple[int, int], row_labels, col_labels, title):
    """``img`` on a canvas with a left margin (row labels), a top margin (column labels, title)."""
    from PIL import Image, ImageDraw

    tile_h, tile_w = tile
    widest = max((int(font.getlength(str(t))) for t in col_labels or []), default=0)
    col_lines = 0 if not col_labels else 1 if widest + 4 <= tile_w else 2
    left = 8 + max((int(font.getlength(str(t))) for t in row_labels), default=0) if row_labels else 0
    title_h = 14 if title else 0
    top = 14 * col_lines + title_h
    width = max(img.width + left, left + 4 + int(font.getlength(title)) if title else 0)
    canvas = Image.new(mode, (width, img.height + top), 255)
    canvas.paste(img, (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left + 2, 1), title, fill=0, font=font)
    for r, text in enumerate(row_labels or []):
        draw.text((2, top + r * tile_h + tile_h // 2 - 6), str(text), fill=0, font=font)
    for c, text in enumerate(col_labels or []):
        line = c % col_lines if col_lines else 0
        draw.text((left + c * tile_w + 2, title_h + 1 + 14 * line), str(text), fill=0, font=font)
    return canvas


def plot_radial_spectra(image_sets: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Log-scale mean radial power spectrum of each named ``(N, C, H, W)`` set (e.g. data vs samples)."""
    fig, ax = new_figure(figsize=(4.5, 3.2))
    for name, images in image_sets.items():
        spectrum = radial_power_spectrum(images)
        ax.semilogy(spectrum.radius.numpy(), spectrum.power.numpy(), marker="o", ms=3, label=name)
    ax.set_xlabel("radial frequency (cycles / image)")
    ax.set_ylabel("mean power")
    ax.set_title("radial power spectrum", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def band_energy_along_k(trajectory: torch.Tensor, transform: KTransform) -> torch.Tensor:
    """Mean energy per band of every state of a trajectory.

    Args:
        trajectory: states ``(N, S, C, H, W)`` (from ``generate(..., return_trajectory=True)``).
        transform: the transform defining the bands.

    Returns:
        Shape ``(S, num_bands)``.
    """
    return torch.stack([band_energy(transform, trajectory[:, i].to(torch.float64)) for i in range(trajectory.shape[1])])


def plot_band_energy(
    ks: Sequence[float], energies: torch.Tensor, path: str | Path, data_energy: torch.Tensor | None = None
) -> Path:
    """Band energy along k (one curve per band), dashed lines at the data's band energies.

    Args:
        ks: k of each state, length S.
        energies: ``(S, num_bands)`` from :func:`band_energy_along_k`.
        path: output PNG.
        data_energy: optional ``(num_bands,)`` energies of real data.
    """
    fig, ax = new_figure(figsize=(4.5, 3.2))
    for b in range(energies.shape[1]):
        (line,) = ax.plot(ks, energies[:, b].numpy(), label=f"band {b}")
        if data_energy is not None:
            ax.axhline(float(data_energy[b]), color=line.get_color(), ls="--", lw=0.8)
    for edge in range(1, energies.shape[1]):
        ax.axvline(edge, color="grey", lw=0.5)
    if data_energy is not None:
        ax.plot([], [], color="grey", ls="--", lw=0.8, label="data")
    ax.set_xlabel("k")
    ax.set_ylabel("energy per band")
    ax.set_yscale("log")
    ax.set_title("band energy along k (solid: samples)", fontsize=9)
    if energies.shape[1] <= 8:
        ax.legend(fontsize=7)
    else:  # too many bands to name one by one
        ax.text(0.01, 0.01, f"{energies.shape[1]} bands, coarse to fine", transform=ax.transAxes, fontsize=7)
    return save_figure(fig, path)
