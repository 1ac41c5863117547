"""Dask cluster benchmark: the compute-bound case in process and on a local Dask cluster of 1 and of 2 workers
(one thread each), like benchmarks/workers.py. Each cluster is started, and its workers have imported geoclassify
and ONNX Runtime, before the run is timed; the start-up is reported apart.

    python benchmarks/cluster.py [--features 1000]
"""

from __future__ import annotations

import argparse
import importlib
import time

from distributed import Client, LocalCluster

from compute import end_to_end


def on_cluster(count: int, workers: int) -> tuple[float, float]:
    """(seconds to a ready cluster, features/s of the run on it)."""
    started = time.perf_counter()
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        for module in ("geoclassify.runners.cluster", "geoclassify.runners.local", "onnxruntime"):
            client.run(importlib.import_module, module)
        ready = time.perf_counter() - started
        return ready, end_to_end(count, scheduler=client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1000)
    args = parser.parse_args()
    in_process = end_to_end(args.features)
    runs = {workers: on_cluster(args.features, workers) for workers in (1, 2)}
    print("| run | features/s | cluster start-up (not in the rate) |")
    print("|---|---|---|")
    print(f"| in process (all cores for inference) | {in_process:,.1f} | |")
    for workers, (ready, rate) in runs.items():
        print(f"| Dask, {workers} worker{'s' * (workers > 1)} x 1 thread | {rate:,.1f} | {ready:.1f} s |")
    ratio = runs[2][1] / runs[1][1]
    print(f"\nratio: 2 workers = {ratio:.2f}x one worker; {runs[2][1] / in_process:.2f}x the in-process run")


if __name__ == "__main__":
    main()
