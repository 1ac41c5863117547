"""Load: 10 concurrent clients submit 50 small jobs (the bundled sample, 121 houses each) through Esri's REST API.

    python benchmarks/server_load.py [--clients 10] [--jobs 50] [--workers 2]

Two bursts: one on the server just started (its workers still cold: their first run imports and loads what a run
needs), then the same again once every job of the first has ended. For each it prints the submission latencies
(p50, p95, max; target p95 < 50 ms on loopback) and the time until every job ended; then it checks that every job
succeeded and that the job store is consistent: one result item per job under its own name, no job left running,
no job folder left behind.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from geoclassify.api import sample_paths

from server_process import BenchServer

INPUTS = {
    "inputRaster": {"uri": "orthophoto.tif"},
    "inputFeatures": {"uri": "houses.gpkg"},
    "model": {"uri": "roof-damage.dlpk"},
}
ENDED = ("esriJobSucceeded", "esriJobFailed", "esriJobCancelled")


def burst(server: BenchServer, tag: str, clients: int, jobs: int) -> tuple[list[float], dict[str, str], float, float]:
    """``clients`` threads submit ``jobs`` jobs between them, each on its own keep-alive connection; then wait for
    every job to end. Returns the latencies, each job's final status, and the times to submit and to end."""
    latencies: list[float] = []
    job_ids: list[str] = []
    lock = threading.Lock()
    numbers = iter(range(jobs))

    def client() -> None:
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            started = time.perf_counter()
            job_id = server.submit(f"{tag}-{number}", **INPUTS)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                job_ids.append(job_id)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submitted = time.perf_counter() - started
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + 600
    while len(statuses) < len(job_ids) and time.monotonic() < deadline:
        for job_id in set(job_ids) - set(statuses):
            status = server.status(job_id)["jobStatus"]
            if status in ENDED:
                statuses[job_id] = status
        time.sleep(0.2)
    return sorted(latencies), statuses, submitted, time.perf_counter() - started


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
    results = {}
    try:
        for tag in ("cold", "warm"):
            results[tag] = burst(server, tag, args.clients, args.jobs)
    finally:
        server.stop()
    print(f"{args.clients} clients, {args.jobs} jobs a burst, {args.workers} workers")
    consistent = True
    for tag, (latencies, statuses, submitted, ended) in results.items():
        p50 = latencies[len(latencies) // 2] * 1000
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000
        succeeded = sum(s == "esriJobSucceeded" for s in statuses.values())
        consistent &= succeeded == args.jobs
        print(
            f"{tag}: submission p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {latencies[-1] * 1000:.1f} ms (target p95 "
            f"< 50 ms); submitted in {submitted:.2f} s, all ended in {ended:.1f} s; {succeeded} of {args.jobs} "
            "succeeded"
        )
    with sqlite3.connect(server.state / "jobs.sqlite") as con:
        states = dict(con.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        items = con.execute("SELECT count(*), count(DISTINCT name), count(DISTINCT job_id) FROM items").fetchone()
    folders = server.state / "jobs"
    leftovers = list(folders.iterdir()) if folders.exists() else []
    total = 2 * args.jobs
    print(
        f"store: jobs by status {states}; result items {items[0]} ({items[1]} names, {items[2]} jobs); "
        f"job folders left {len(leftovers)}"
    )
    consistent &= states == {"successful": total} and tuple(items) == (total,) * 3 and not leftovers
    print("consistent" if consistent else "NOT CONSISTENT")
    shutil.rmtree(root, ignore_errors=True)
    if not consistent:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
