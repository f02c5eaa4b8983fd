"""Put several assembly benchmark runs side by side: pooled test means against a scale.

Each ``--run X=PATH`` is one ``benchmark.json`` of ``scripts/benchmark_assembly.py`` (or its
folder) and ``X`` its scale: training clusters (``data.max_train``) or parameters. Writes a
figure with one panel per metric and prints a markdown table.

    python scripts/plot_scaling.py --run 79=outputs/scale/n79 --run 200=outputs/scale/n200 \\
        --run 624=outputs/real/local --x-label "training clusters" --output docs/figures/scaling_data.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kflow_mol.benchmark.report import pooled_means
from kflow_mol.plots import scaling_chart

METRICS = ("pm_atom", "pm_center", "orientation_median_deg", "centroid_error")


def read_run(parser: argparse.ArgumentParser, spec: str) -> tuple[float, list[dict]]:
    """``X=PATH`` -> ``(X, records)``; a bad spec or file ends the script with one line (exit 2)."""
    scale, _, where = spec.partition("=")
    path = Path(where) / "benchmark.json" if Path(where).is_dir() else Path(where)
    try:
        return float(scale), json.loads(path.read_text())
    except OSError as error:
        parser.error(f"--run {spec!r}: cannot read {path}: {error.strerror}")
    except ValueError:  # float() of the scale or json.loads of the file
        parser.error(f"--run {spec!r}: expected X=PATH, a number X and a readable benchmark.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="X=PATH (benchmark.json or its folder)")
    parser.add_argument("--x-label", default="training clusters")
    parser.add_argument("--output", default="scaling.png", help="figure path (PNG)")
    args = parser.parse_args(argv)
    points = {}
    for spec in args.run:
        scale, records = read_run(parser, spec)
        points[scale] = pooled_means(records, METRICS)
    scaling_chart(points, args.output, x_label=args.x_label)
    print(f"| {args.x_label} | method | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for scale, means in sorted(points.items()):
        for method, values in means.items():
            print(
                f"| {scale:g} | {method} | " + " | ".join(f"{values.get(m, float('nan')):.3f}" for m in METRICS) + " |"
            )
    print(f"figure: {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
