"""Compute-bound benchmark: a CNN of about 1.5 GFLOP per 224-px chip.

    python benchmarks/compute.py [--features 1500] [--repeat 3]

Prints end-to-end features/s of `geoclassify classify` against the model alone on chips already in memory
(same batch size, ONNX Runtime's default threads): how much of the model's speed the pipeline keeps. With
``--repeat`` the two are measured in turn that many times and the median ratio is given: this machine's speed
drifts by 10% from minute to minute, which a single pair cannot tell from the pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from geoclassify import classify_objects

import data

WIDTHS = [32, 64, 128, 256]
SIZE = 224
BATCH = 16


def model_alone(count: int) -> float:
    """Chips/s of ONNX Runtime on ``count`` chips in memory, batch size ``BATCH``, default threads."""
    session = ort.InferenceSession(str(data.cnn("compute224", SIZE, WIDTHS)), providers=["CPUExecutionProvider"])
    chips = np.random.default_rng(0).normal(size=(BATCH, 3, SIZE, SIZE)).astype(np.float32)
    session.run(None, {"input": chips})
    started = time.perf_counter()
    for _ in range(count // BATCH):
        session.run(None, {"input": chips})
    return (count // BATCH) * BATCH / (time.perf_counter() - started)


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
    pairs = [(end_to_end(args.features), model_alone(args.features)) for _ in range(args.repeat)]
    ratios = [ours / alone for ours, alone in pairs]
    print()
    print("| run | chips | features/s |")
    print("|---|---|---|")
    print(f"| geoclassify classify (end to end) | {args.features:,} | {', '.join(f'{o:,.1f}' for o, _ in pairs)} |")
    chips = args.features // BATCH * BATCH
    print(f"| model alone, chips in memory | {chips:,} | {', '.join(f'{a:,.1f}' for _, a in pairs)} |")
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"\nratio: {statistics.median(ratios):.2f} of the model alone (each pair: {shown}; target >= 0.9)")


if __name__ == "__main__":
    main()
