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


def save_grid(
    images: torch.Tensor,
    path: str | Path,
    nrow: int = 10,
    upscale: int = 4,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write ``(N, C, H, W)`` images in [-1, 1] as a PNG grid, nearest-upscaled by ``upscale``.

    Args:
        images: the tiles, row-major.
        path: output PNG.
        nrow: tiles per row.
        upscale: nearest-neighbour magnification.
        row_labels: one text per row, written in a left margin (e.g. ``class 3``).
        col_labels: one text per column, written in a top margin (e.g. ``k=1.50``).
        title: a line above everything (e.g. what the rows and columns vary).
    """
    from PIL import Image, ImageDraw, ImageFont

    grid = image_grid(images, nrow)
    mode = "L" if grid.shape[-1] == 1 else "RGB"
    img = Image.fromarray(grid[..., 0] if mode == "L" else grid, mode=mode)
    img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    if row_labels or col_labels or title:
        font = ImageFont.load_default()
        tile_h, tile_w = (images.shape[-2] + 1) * upscale, (images.shape[-1] + 1) * upscale
        left = 8 + max((int(font.getlength(t)) for t in row_labels), default=0) if row_labels else 0
        top = (14 if col_labels else 0) + (14 if title else 0)
        canvas = Image.new(mode, (img.width + left, img.height + top), 255)
        canvas.paste(img, (left, top))
        draw = ImageDraw.Draw(canvas)
        if title:
            draw.text((left + 2, 1), title, fill=0, font=font)
        for r, text in enumerate(row_labels or []):
            draw.text((2, top + r * tile_h + tile_h // 2 - 6), str(text), fill=0, font=font)
        for c, text in enumerate(col_labels or []):
            draw.text((left + c * tile_w + 2, top - 13), str(text)[: max(1, tile_w // 6)], fill=0, font=font)
        img = canvas
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def plot_radial_spectra(image_sets: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """Log-scale mean radial power spectrum of each named ``(N, C, H, W)`` set (e.g. data vs samples)."""
    fig, ax = new_figure(figsize=(4.5, 3.2))
    for name, images in image_sets.items():
        spectrum = radial_power_spectrum(images)
        ax.semilogy(spectrum.radius.numpy(), spectrum.power.numpy(), marker="o", ms=3, label=name)
    ax.set_xlabel("radial frequency (cycles / image)")
    ax.set_ylabel("mean power")
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
    ax.set_xlabel("k")
    ax.set_ylabel("energy per band")
    ax.set_yscale("log")
    if energies.shape[1] <= 8:
        ax.legend(fontsize=7)
    return save_figure(fig, path)
