"""Inception reference statistics (.npz: mu, sigma, num_samples, features) of an image folder.

    python scripts/fid_stats.py /data/celebahq --out stats/celebahq256.npz \
        --inception-weights /weights/inception-2015-12-05.pt --size 256 --device cuda

Then score runs against it with eval.inception_weights=... eval.inception_reference=stats/celebahq256.npz.
Nothing is downloaded: the Inception file is yours (TorchScript inception-2015-12-05.pt).
"""

from __future__ import annotations

import argparse
import sys

from kflow_image.fid import save_folder_reference_stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="folder of images (searched recursively)")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--inception-weights", required=True, help="local Inception file")
    parser.add_argument("--size", type=int, default=256, help="short side resized, then centre-cropped")
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--keep-features", type=int, default=10_000, help="features kept for precision/recall")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        stats = save_folder_reference_stats(
            args.folder,
            args.out,
            args.inception_weights,
            args.size,
            args.channels,
            args.batch_size,
            args.keep_features,
            args.device,
            args.num_workers,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError, ImportError) as err:
        print(f"fid_stats: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out}: {stats.num_samples} images, D={stats.mu.shape[0]}")


if __name__ == "__main__":
    main()
