"""How close the dense run comes to the machine's limit: three figures of one case, measured in one run.

    python benchmarks/limit.py [--size 8192] [--features 34600] [--repeat 1]

1. decode: reading (and decompressing) every raster block any chip window touches, in one process, nothing else;
2. model alone: ONNX Runtime on the same number of chips already in memory (normalised, the run's batch size):
   one session on one intra-op thread, one on the default threads, and two one-thread sessions side by side (one
   per core, as the run does); the fastest counts;
3. end to end: the ``geoclassify classify`` command, process start to exit (GeoPackage in and out).

A run can do no better than the slower of decode and model (they overlap in the pipeline, the rest of the work
hides behind them), so ``end to end / max(decode, model)`` says how far it is from the limit (target <= 1.3). On a
machine of few cores decode and the model share them, so the sum of their CPU time over the cores is printed too:
the tighter floor.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyogrio
import rasterio
from rasterio.windows import Window

import data

CHIP = data.TINY_CHIP
#: Batch size of the run: the EMD sets none, so the default (geoclassify.model.runtime.DEFAULT_BATCH_SIZE).
BATCH = 16
#: Distinct chips the model-alone figure cycles through: the same work as every chip, in bounded memory.
POOL = 2048


def chip_windows(raster: Path, houses: Path) -> np.ndarray:
    """(row_off, col_off) of every feature's fixed chip window, as the run places them."""
    bounds = pyogrio.read_dataframe(houses, columns=[]).geometry.bounds.to_numpy()
    with rasterio.open(raster) as src:
        inverse = ~src.transform
    cols, rows = inverse * ((bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2)
    return np.column_stack(
        [np.floor(np.asarray(rows) - CHIP / 2 + 0.5), np.floor(np.asarray(cols) - CHIP / 2 + 0.5)]
    ).astype(np.int64)


def decode_seconds(raster: Path, windows: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds to decode every block any window touches (each once); returns the whole image too."""
    started = time.perf_counter()
    with rasterio.open(raster) as src:
        bh, bw = src.block_shapes[0]
        rows_b = np.arange(math.ceil(src.height / bh))
        cols_b = np.arange(math.ceil(src.width / bw))
        needed = np.zeros((len(rows_b), len(cols_b)), dtype=bool)
        r0 = np.clip(windows[:, 0], 0, src.height - 1) // bh
        r1 = np.clip(windows[:, 0] + CHIP - 1, 0, src.height - 1) // bh
        c0 = np.clip(windows[:, 1], 0, src.width - 1) // bw
        c1 = np.clip(windows[:, 1] + CHIP - 1, 0, src.width - 1) // bw
        for dr in (r0, r1):
            for dc in (c0, c1):
                needed[dr, dc] = True
        image = np.zeros((src.count, src.height, src.width), dtype=np.uint8)
        for br, bc in zip(*np.nonzero(needed), strict=True):
            window = Window(bc * bw, br * bh, min(bw, src.width - bc * bw), min(bh, src.height - br * bh))
            rows = slice(window.row_off, window.row_off + window.height)
            image[:, rows, window.col_off : window.col_off + window.width] = src.read(window=window)
    return time.perf_counter() - started, image


def model_seconds(model: Path, image: np.ndarray, windows: np.ndarray, threads: int, sessions: int = 1) -> float:
    """Seconds for ONNX Runtime to classify ``len(windows)`` chips in memory, batch size ``BATCH``, on
    ``sessions`` sessions side by side (each on a thread of its own, taking every ``sessions``-th batch)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runs = [ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"]) for _ in range(sessions)]
    inside = windows[
        (windows[:, 0] >= 0)
        & (windows[:, 1] >= 0)
        & (windows[:, 0] + CHIP <= image.shape[1])
        & (windows[:, 1] + CHIP <= image.shape[2])
    ][:POOL]
    pool = np.stack([image[:, r : r + CHIP, c : c + CHIP] for r, c in inside]).astype(np.float32)
    pool = (pool - 120.0) / 60.0
    for session in runs:
        session.run(None, {"input": pool[:BATCH]})

    def share(k: int) -> None:
        for start in range(k * BATCH, len(windows), sessions * BATCH):
            count = min(BATCH, len(windows) - start)
            at = start % (len(pool) - BATCH)
            runs[k].run(None, {"input": pool[at : at + count]})

    started = time.perf_counter()
    with ThreadPoolExecutor(sessions) as threads_of:
        list(threads_of.map(share, range(sessions)))
    return time.perf_counter() - started


def end_to_end_seconds(raster: Path, model: Path, houses: Path) -> tuple[float, float, float]:
    """Seconds of the ``geoclassify classify`` command, process start to exit, the CPU seconds it used (on a
    shared machine the steadier figure), and the seconds its summary line gives (the run inside the process:
    no interpreter start, imports or exit)."""
    out = data.CACHE / "limit_out.gpkg"
    command = [sys.executable, "-m", "geoclassify", "classify", "--image", str(raster), "--model", str(model)]
    command += ["--features", str(houses)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, "--out", str(out), "--overwrite"], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    inside = re.search(r"; ([0-9.]+) s, [0-9,]+ features/s", done.stderr + done.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, float(inside.group(1)) if inside else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--features", type=int, default=34_600)
    parser.add_argument("--repeat", type=int, default=1, help="end-to-end runs (the median is reported)")
    args = parser.parse_args()
    raster = data.raster(args.size)
    houses = data.polygons(args.features, args.size)
    onnx_file = data.tiny_cnn()
    model = data.tiny_dlpk()
    windows = chip_windows(raster, houses)
    decode_seconds(raster, windows)  # once to warm the file cache, as the command's runs find it
    decode, image = decode_seconds(raster, windows)
    variants = {
        "1 intra-op thread": (1, 1),
        "default intra-op threads": (0, 1),
        "2 one-thread sessions side by side": (1, 2),
    }
    alone = {name: model_seconds(onnx_file, image, windows, *how) for name, how in variants.items()}
    del image
    best = min(alone.values())
    measured = [end_to_end_seconds(raster, model, houses) for _ in range(args.repeat)]
    runs = [wall for wall, _, _ in measured]
    e2e = statistics.median(runs)
    cpu = statistics.median(used for _, used, _ in measured)
    core = statistics.median(inside for _, _, inside in measured)
    cores = len(os.sched_getaffinity(0))
    n = len(windows)
    mflop = data.flops(data.TINY_WIDTHS, CHIP) / 1e6
    print(f"case: {args.size:,}² tiled DEFLATE GeoTIFF, {n:,} polygons, 64-px CNN ({mflop:.1f} MFLOP)")
    print()
    print("| figure | seconds | features/s |")
    print("|---|---|---|")
    print(f"| decode every block the chips touch | {decode:.2f} | {n / decode:,.0f} |")
    for name, seconds in alone.items():
        print(f"| model alone, {name} | {seconds:.2f} | {n / seconds:,.0f} |")
    shown = ", ".join(f"{r:.2f}" for r in runs)
    print(f"| end to end (`geoclassify classify`, process start to exit) | {e2e:.2f} ({shown}) | {n / e2e:,.0f} |")
    print(f"| the run inside the process (its summary line) | {core:.2f} | {n / core:,.0f} |")
    print(f"| end to end, CPU seconds (all threads) | {cpu:.2f} | |")
    print(
        f"\nratio: end to end / max(decode, model) = {e2e / max(decode, best):.2f} (target <= 1.3); "
        f"{n / e2e:,.0f} features/s end to end (target >= 12,000)"
    )
    one_thread = alone["1 intra-op thread"]
    budget = n / 12_000
    print(
        f"the model on one thread computes {n * mflop / 1e3 / one_thread:.0f} GFLOP/s; 12,000 features/s allows "
        f"{budget:.2f} s from process start to exit, of which the model at its fastest takes {best:.2f} s and "
        f"decode {decode / cores:.2f} s of the {cores} cores"
    )
    # Decode and the model share the cores: their CPU time over the cores is the tighter floor.
    floor = (decode + one_thread) / cores
    print(
        f"on {cores} cores, (decode + model on one thread) / cores = {floor:.2f} s; the run inside the process is "
        f"{core / floor:.2f}x that, the command {e2e / floor:.2f}x"
    )


if __name__ == "__main__":
    main()
