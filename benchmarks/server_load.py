"""Load: 10 concurrent clients submit 50 small jobs (the bundled sample, 121 houses each) through Esri's REST API.

    python benchmarks/server_load.py [--clients 10] [--jobs 50] [--workers 2]

Prints the submission latencies (p50, p95, max; target p95 < 50 ms on loopback), the time until every job ended,
and checks that every job succeeded and the job store is consistent: one result item per job under its own name,
no job left running, no job folder left behind.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from server_process import BenchServer

from geoclassify.api import sample_paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="geoclassify-load-"))
    for path in sample_paths().values():
        shutil.copy(path, root / path.name)
    server = BenchServer(root, workers=args.workers)
    latencies: list[float] = []
    job_ids: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(args.jobs))

    def client() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            started = time.perf_counter()
            job_id = server.submit(
                f"load-{number}",
                inputRaster={"uri": "orthophoto.tif"},
                inputFeatures={"uri": "houses.gpkg"},
                model={"uri": "roof-damage.dlpk"},
            )
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                job_ids.append(job_id)

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        submitted = time.perf_counter() - started
        pending = set(job_ids)
        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                status = server.status(job_id)["jobStatus"]
                if status in ("esriJobSucceeded", "esriJobFailed", "esriJobCancelled"):
                    statuses[job_id] = status
                    pending.discard(job_id)
            time.sleep(0.2)
        ended = time.perf_counter() - started
    finally:
        server.stop()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000
    succeeded = sum(s == "esriJobSucceeded" for s in statuses.values())
    with sqlite3.connect(server.state / "jobs.sqlite") as con:
        states = dict(con.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        items = con.execute("SELECT count(*), count(DISTINCT name), count(DISTINCT job_id) FROM items").fetchone()
    leftovers = list((server.state / "jobs").iterdir()) if (server.state / "jobs").exists() else []
    print(f"{args.clients} clients, {len(job_ids)} jobs, {args.workers} workers")
    print(
        f"submission: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1] * 1000:.1f} ms (target p95 < 50 ms); "
        f"all submitted in {submitted:.2f} s"
    )
    print(f"all ended in {ended:.1f} s: {succeeded} succeeded of {len(job_ids)}")
    print(
        f"store: jobs by status {states}; result items {items[0]} ({items[1]} names, {items[2]} jobs); "
        f"job folders left {len(leftovers)}"
    )
    consistent = (
        succeeded == len(job_ids) == args.jobs
        and states == {"successful": args.jobs}
        and tuple(items) == (args.jobs,) * 3
        and not leftovers
    )
    print("consistent" if consistent else "NOT CONSISTENT")
    shutil.rmtree(root, ignore_errors=True)
    if not consistent:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
