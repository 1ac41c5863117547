"""Startup benchmark: how long ``geoclassify --help`` takes, and what a classify run pays for imports.

python benchmarks/startup.py [--repeat 5]

``--help`` is timed end to end (a fresh interpreter each time); the classify run's import cost is the sum of the
top-level entries of ``python -X importtime`` for a real run on the bundled sample, so it counts the imports the
run makes lazily too. Each figure is the minimum of ``--repeat`` runs, as the machine is shared.

The floor under that figure is printed beside it: the same sum for importing only the libraries any classify run
of a GeoPackage with an ONNX model needs (numpy, shapely, pyogrio, rasterio, onnxruntime, click), and for pyogrio
alone, which imports pyarrow, pyproj, geopandas and pandas whether or not they are used (its ``_compat`` module).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "geoclassify" / "sample" / "data"
#: What every classify run of a vector layer with an ONNX model imports, whatever geoclassify does.
DEPENDENCIES = "numpy, shapely, pyogrio, rasterio, onnxruntime, click"


def help_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoclassify", "--help"], check=True, capture_output=True)
    return time.perf_counter() - started


def classify_import_seconds(folder: Path) -> float:
    """Import time of one classify run: the sum of ``-X importtime``'s top-level (not nested) entries."""
    return top_level_import_seconds([
        "-m", "geoclassify", "classify", "--quiet", "--overwrite",
        "--image", str(SAMPLE / "orthophoto.tif"), "--features", str(SAMPLE / "houses.gpkg"),
        "--model", str(SAMPLE / "roof-damage.dlpk"), "--out", str(folder / "out.gpkg"),
    ])  # fmt: skip


def top_level_import_seconds(arguments: list[str]) -> float:
    """The sum of ``python -X importtime``'s top-level (not nested) entries for a fresh interpreter."""
    command = [sys.executable, "-X", "importtime", *arguments]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    microseconds = 0
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        if not name.startswith("  "):  # one space: imported at the top, not by another module
            microseconds += int(cumulative)
    return microseconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    help_time = min(help_seconds() for _ in range(args.repeat))
    with tempfile.TemporaryDirectory() as folder:
        classify_import_seconds(Path(folder))  # the first run extracts the sample package into the cache
        import_time = min(classify_import_seconds(Path(folder)) for _ in range(args.repeat))
    floor = min(top_level_import_seconds(["-c", f"import {DEPENDENCIES}"]) for _ in range(args.repeat))
    pyogrio = min(top_level_import_seconds(["-c", "import pyogrio"]) for _ in range(args.repeat))
    print(f"| what | seconds (min of {args.repeat}) | target |")
    print("|---|---|---|")
    print(f"| `geoclassify --help`, wall | {help_time:.3f} | <= 0.3 |")
    print(f"| imports of a classify run (sample) | {import_time:.3f} | <= 0.35 |")
    print(f"| floor: importing only {DEPENDENCIES} | {floor:.3f} | |")
    print(f"| `import pyogrio` alone (it imports shapely, pyarrow, pyproj, geopandas, pandas) | {pyogrio:.3f} | |")


if __name__ == "__main__":
    main()
