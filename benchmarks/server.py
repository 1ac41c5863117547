"""A job through the REST API against the CLI on the dense benchmark (10,000 x 10,000 GeoTIFF, 100,000 polygons).

    python benchmarks/server.py [--size 10000] [--features 100000]

Both are timed end to end as a user sees them: the CLI from starting ``geoclassify classify`` to its exit, the job
from ``submitJob`` to the first status poll (every 0.1 s) that reads esriJobSucceeded (the result published in
My Content). Target: the job reaches at least 0.9 of the CLI's features/s.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time

import data
from server_process import BenchServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100_000)
    args = parser.parse_args()
    raster = data.raster(args.size)
    houses = data.polygons(args.features, args.size)
    model = data.tiny_dlpk()
    out = data.CACHE / "server_cli_out.gpkg"
    started = time.perf_counter()
    command = ["classify", "--image", raster, "--features", houses, "--model", model, "--out", out, "--overwrite", "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "geoclassify", *map(str, command)], check=True, capture_output=True, text=True
    )
    cli = time.perf_counter() - started
    cli_core = rate(done.stderr)
    server = BenchServer(data.CACHE)
    try:
        started = time.perf_counter()
        job_id = server.submit(
            f"dense-{int(time.time())}",
            inputRaster={"uri": raster.name},
            inputFeatures={"uri": houses.name},
            model={"uri": model.name},
        )
        while (status := server.status(job_id))["jobStatus"] not in ("esriJobSucceeded", "esriJobFailed"):
            time.sleep(0.1)
        job = time.perf_counter() - started
    finally:
        server.stop()
    if status["jobStatus"] != "esriJobSucceeded":
        raise SystemExit(f"the job failed: {status['messages'][-1]['description']}")
    print("| pipeline | features | seconds | features/s |")
    print("|---|---|---|---|")
    print(
        f"| geoclassify classify (CLI, process start to exit) | {args.features:,} | {cli:.1f} | "
        f"{args.features / cli:,.0f} |"
    )
    print(f"| REST job (submitJob to esriJobSucceeded) | {args.features:,} | {job:.1f} | {args.features / job:,.0f} |")
    job_core = rate(status["messages"][-1]["description"])
    print(
        f"\nratio: {cli / job:.2f} of the CLI's features/s (target >= 0.9); the run core's own rate (its summary "
        f"line) {cli_core:,.0f}/s in the CLI, {job_core:,.0f}/s in the job's worker"
    )


def rate(summary: str) -> float:
    """The features/s of a run's summary line ("...; 27.45 s, 3,643 features/s ...")."""
    match = re.search(r"([\d,]+) features/s", summary)
    return float(match[1].replace(",", "")) if match else float("nan")


if __name__ == "__main__":
    main()
