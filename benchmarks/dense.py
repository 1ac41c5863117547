"""Dense benchmark: 10,000 x 10,000 tiled GeoTIFF, 100,000 polygons, a small 64-px CNN.

    python benchmarks/dense.py [--size 10000] [--features 100000] [--baseline 3000]

Prints end-to-end features/s of `geoclassify classify` (API, GeoPackage in and out) against the plain
per-feature loop (``baseline.py``) on a subset of the same features.
"""

from __future__ import annotations

import argparse
import time

import geopandas as gpd

from geoclassify import classify_objects

import data
from baseline import plain_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=3_000, help="features the plain loop classifies")
    parser.add_argument("--parallel-factor", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    raster = data.raster(args.size)
    houses = data.polygons(args.features, args.size)
    model = data.tiny_dlpk()
    print(
        f"data ready in {time.perf_counter() - started:.1f} s: {raster.name}, {houses.name}, "
        f"model {data.flops(data.TINY_WIDTHS, data.TINY_CHIP) / 1e6:.0f} MFLOP per chip"
    )
    out = data.CACHE / "dense_out.gpkg"
    options = {"parallel_factor": args.parallel_factor} if args.parallel_factor else {}
    summary = classify_objects(raster, model, houses, out, overwrite=True, **options)
    ours = summary.read / summary.seconds
    subset = gpd.read_file(houses, max_features=args.baseline).geometry
    theirs = plain_loop(raster, list(subset), data.CACHE / "tiny64.onnx", 64)
    print()
    print("| pipeline | features | seconds | features/s |")
    print("|---|---|---|---|")
    print(f"| geoclassify classify (end to end) | {summary.read:,} | {summary.seconds:.1f} | {ours:,.0f} |")
    print(f"| plain per-feature loop | {args.baseline:,} | {args.baseline / theirs:.1f} | {theirs:,.0f} |")
    print(f"\nratio: {ours / theirs:.1f}x the plain loop (target >= 15x); {ours:,.0f} features/s (target >= 5,000)")


if __name__ == "__main__":
    main()
