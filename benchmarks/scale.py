"""Scale benchmark: 1,000,000 points over a 40,000 x 40,000 raster (a VRT of 16 generated tiles), against 100,000.

    python benchmarks/scale.py [--features 1000000] [--small 100000]

Each run is a fresh process, so its peak memory (RSS) is its own. Prints peak RSS and time per feature.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import rasterio

import data

TILE = 10_000
GRID = 4


def mosaic_vrt() -> Path:
    """A 40,000 x 40,000 VRT made of the 10,000 x 10,000 scene repeated 4 x 4 times: big, but cheap on disk."""
    path = data.CACHE / "scene_40000.vrt"
    tile = data.raster(TILE)
    if path.exists():
        return path
    with rasterio.open(tile) as src:
        geo = ", ".join(str(v) for v in src.transform.to_gdal())
        wkt = src.crs.to_wkt()
    bands = []
    for band in (1, 2, 3):
        sources = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{tile.name}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{TILE}" ySize="{TILE}"/>'
            f'<DstRect xOff="{c * TILE}" yOff="{r * TILE}" xSize="{TILE}" ySize="{TILE}"/></SimpleSource>'
            for r in range(GRID)
            for c in range(GRID)
        )
        bands.append(f'<VRTRasterBand dataType="Byte" band="{band}">{sources}</VRTRasterBand>')
    size = TILE * GRID
    path.write_text(
        f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{wkt}</SRS>'
        f"<GeoTransform>{geo}</GeoTransform>{''.join(bands)}</VRTDataset>"
    )
    return path


RUN = """
import json, resource, sys, time
from geoclassify import classify_objects
raster, points, model, out = sys.argv[1:5]
summary = classify_objects(raster, model, points, out, overwrite=True)
print(json.dumps({"features": summary.read, "seconds": summary.seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(count: int) -> dict:
    raster = mosaic_vrt()
    points = data.points(count, TILE * GRID)
    model = data.tiny_dlpk()
    out = data.CACHE / f"scale_out_{count}.gpkg"
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(raster), str(points), str(model), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args()
    small, large = run(args.small), run(args.features)
    print("| points | seconds | microseconds per feature | peak RSS (MiB) |")
    print("|---|---|---|---|")
    for r in (small, large):
        print(
            f"| {r['features']:,} | {r['seconds']:.1f} | {r['seconds'] / r['features'] * 1e6:.0f} | "
            f"{r['peak_rss_mib']:,.0f} |"
        )
    ratio = (large["seconds"] / large["features"]) / (small["seconds"] / small["features"])
    print(
        f"\ntime per feature: {ratio:.2f}x the {small['features']:,} run (target <= 1.3); peak RSS "
        f"{large['peak_rss_mib'] / 1024:.2f} GiB (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
