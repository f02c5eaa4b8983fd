"""Throughput of the core transforms (forward + inverse), as a Markdown table.

    OMP_NUM_THREADS=1 python scripts/bench_core.py --repeats 7 --out docs/bench_core.md

Images: (batch, 3, 64, 64) float32 through Fourier, Wavelet (db6, 3 levels) and a per-image
PyWavelets loop (wavedec2 + waverec2 per image and channel, the usual way to do it). PCA
stores a dense (D, D) basis, so it runs on (batch, 3, 32, 32) (D = 3072, fitted on 512 smooth
random images); at 3x64x64 the basis alone would be 12288^2 floats. Graph spectral: basis
(Laplacian + batched eigh) and forward + inverse for (256, 17, 3) points with 6 features.
Every row reports the median wall time of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pywt
import torch

from kflow.training import timed_calls
from kflow.transforms import FourierTransform, GraphSpectralTransform, PCATransform, WaveletTransform


@dataclass
class BenchRow:
    name: str
    input_shape: str
    median_ms: float
    items_per_s: float
    max_error: float


def time_median(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds, after one warm-up call."""
    return statistics.median(timed_calls(fn, device, repeats, warmup=1)) * 1e3


def smooth_images(num: int, shape: tuple[int, ...], seed: int, device: torch.device) -> torch.Tensor:
    """Random images with a 1/f^2 power spectrum (structured, so PCA has something to find)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(num, *shape, generator=gen)
    fy = torch.fft.fftfreq(shape[-2])[:, None]
    fx = torch.fft.fftfreq(shape[-1])[None, :]
    envelope = 1.0 / (1.0 + 32.0 * torch.sqrt(fy**2 + fx**2)) ** 2
    images = torch.fft.ifft2(torch.fft.fft2(noise) * envelope).real
    return (images / images.std()).to(device)


def bench_transform(name, transform, x, repeats, device, context=None) -> BenchRow:
    def round_trip():
        return transform.inverse(transform.forward(x, context), context)

    with torch.no_grad():
        error = float((round_trip() - x).abs().max())
        ms = time_median(round_trip, repeats, device)
    return BenchRow(name, str(tuple(x.shape)), ms, x.shape[0] / ms * 1e3, error)


def bench_pywt_loop(x: torch.Tensor, wavelet: str, levels: int, repeats: int) -> BenchRow:
    images = x.cpu().numpy().reshape(-1, *x.shape[-2:])
    warnings.filterwarnings("ignore", message="Level value", category=UserWarning)

    def loop():
        return np.stack(
            [
                pywt.waverec2(
                    pywt.wavedec2(image, wavelet, mode="periodization", level=levels), wavelet, mode="periodization"
                )
                for image in images
            ]
        )

    error = float(np.abs(loop() - images).max())
    ms = time_median(loop, repeats, torch.device("cpu"))
    name = f"PyWavelets loop ({wavelet}, {levels} levels)"
    return BenchRow(name, str(tuple(x.shape)), ms, x.shape[0] / ms * 1e3, error)


def bench_graph_basis(points: torch.Tensor, repeats: int, device: torch.device) -> BenchRow:
    transform = GraphSpectralTransform(num_bands=3)
    ms = time_median(lambda: transform.basis(points), repeats, device)
    name = "Graph spectral basis (Laplacian + eigh)"
    return BenchRow(name, str(tuple(points.shape)), ms, points.shape[0] / ms * 1e3, float("nan"))


def run(args: argparse.Namespace) -> list[BenchRow]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = smooth_images(args.batch, (3, 64, 64), seed=1, device=device)
    small = smooth_images(args.batch, (3, 32, 32), seed=2, device=device)
    pca = PCATransform.fit(smooth_images(512, (3, 32, 32), seed=3, device=device), num_bands=3)
    points = 3.0 * torch.randn(256, 17, 3, device=device)
    features = torch.randn(256, 17, 6, device=device)
    graph = GraphSpectralTransform(num_bands=3)
    basis = graph.basis(points)
    fourier = FourierTransform((3, 64, 64), 3, device=device)
    wavelet = WaveletTransform((3, 64, 64), "db6", 3, device=device)
    repeats = args.repeats
    return [
        bench_transform("Fourier (Hartley, 3 bands)", fourier, images, repeats, device),
        bench_transform("Wavelet (db6, 3 levels)", wavelet, images, repeats, device),
        bench_pywt_loop(images, "db6", 3, repeats),
        bench_transform("PCA (D = 3072, 3 bands)", pca, small, repeats, device),
        bench_graph_basis(points, repeats, device),
        bench_transform("Graph spectral forward + inverse (d = 6)", graph, features, repeats, device, context=basis),
    ]


def to_markdown(rows: list[BenchRow], args: argparse.Namespace) -> str:
    header = (
        f"Device: {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"median of {args.repeats} runs, float32.\n\n"
        "| transform | input | forward + inverse (ms) | samples / s | max round-trip error |\n"
        "|---|---|---:|---:|---:|\n"
    )
    lines = [
        f"| {r.name} | {r.input_shape} | {r.median_ms:.2f} | {r.items_per_s:,.0f} | "
        + ("-" if np.isnan(r.max_error) else f"{r.max_error:.1e}")
        + " |"
        for r in rows
    ]
    return header + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64, help="images per batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    table = to_markdown(run(args), args)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)


if __name__ == "__main__":
    main()
