"""Compute-bound benchmark: a CNN of about 1.5 GFLOP per 224-px chip.

    python benchmarks/compute.py [--features 1500] [--repeat 3]

Prints end-to-end features/s of `geoclassify classify` against the model alone on chips already in memory, at
the faster of two ways (whole batches on ONNX Runtime's default threads, or one-thread sessions side by side in
calls of the run's size): how much of the model's speed the pipeline keeps. With
``--repeat`` the two are measured in turn that many times and the median ratio is given: this machine's speed
drifts by 10% from minute to minute, which a single pair cannot tell from the pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort

from geoclassify import classify_objects
from geoclassify.model.backends.base import CPU_PIXELS_PER_CALL
from geoclassify.model.backends.onnx import available_cores

import data

WIDTHS = [32, 64, 128, 256]
SIZE = 224
BATCH = 16


def model_alone(count: int, sessions: int = 1, size: int = BATCH) -> float:
    """Chips/s of ONNX Runtime on ``count`` chips in memory, ``size`` chips a call: one session on the default
    threads, or ``sessions`` one-thread sessions side by side (each on a thread of its own), as the run uses it."""
    options = ort.SessionOptions()
    if sessions > 1:
        options.intra_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    model = str(data.cnn("compute224", SIZE, WIDTHS))
    runs = [ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]) for _ in range(sessions)]
    chips = np.random.default_rng(0).normal(size=(size, 3, SIZE, SIZE)).astype(np.float32)
    for session in runs:
        session.run(None, {"input": chips})
    calls = count // size // sessions

    def share(session: ort.InferenceSession) -> None:
        for _ in range(calls):
            session.run(None, {"input": chips})

    started = time.perf_counter()
    with ThreadPoolExecutor(sessions) as threads:
        list(threads.map(share, runs))
    return calls * sessions * size / (time.perf_counter() - started)


def model_both(count: int) -> tuple[float, float]:
    """The model alone both ways: whole batches on the default threads (one session), and the run's way, one-thread
    sessions side by side on every core in calls of ``CPU_PIXELS_PER_CALL`` pixels. The faster counts."""
    size = max(1, CPU_PIXELS_PER_CALL // (SIZE * SIZE))
    return model_alone(count), model_alone(count, available_cores(), size)


def end_to_end(count: int, parallel_factor: str | None = None, scheduler: object = None) -> float:
    raster = data.raster(4096, seed=5)
    houses = data.polygons(count, 4096, seed=6, name=f"houses_compute_{count}.gpkg")
    model = data.dlpk(data.cnn("compute224", SIZE, WIDTHS), SIZE)
    summary = classify_objects(
        raster,
        model,
        houses,
        data.CACHE / "compute_out.gpkg",
        overwrite=True,
        arguments={"batch_size": BATCH},
        parallel_factor=parallel_factor,
        scheduler=scheduler,
    )
    return summary.read / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs, in turn (the median ratio counts)")
    args = parser.parse_args()
    print(f"model: {data.flops(WIDTHS, SIZE) / 1e9:.2f} GFLOP per {SIZE}-px chip, batch size {BATCH}")
    runs = [(end_to_end(args.features), *model_both(args.features)) for _ in range(args.repeat)]
    ratios = [ours / max(whole, sliced) for ours, whole, sliced in runs]
    against_whole = [ours / whole for ours, whole, _ in runs]
    print()
    print("| run | chips | features/s |")
    print("|---|---|---|")
    print(f"| geoclassify classify (end to end) | {args.features:,} | {', '.join(f'{r[0]:,.1f}' for r in runs)} |")
    chips = args.features // BATCH * BATCH
    print(f"| model alone, whole batches, default threads | {chips:,} | {', '.join(f'{r[1]:,.1f}' for r in runs)} |")
    print(f"| model alone, as the run calls it | {chips:,} | {', '.join(f'{r[2]:,.1f}' for r in runs)} |")
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"\nratio: {statistics.median(ratios):.2f} of the model alone at its fastest (each: {shown}; target >= 0.9); "
        f"{statistics.median(against_whole):.2f} of whole batches on the default threads"
    )


if __name__ == "__main__":
    main()
