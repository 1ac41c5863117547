"""Collections benchmark: 10,000 small PNG and JPEG photos, no feature layer (each photo one object).

python benchmarks/image_collections.py [--images 10000]

The photos (64 to 256 pixels a side, generated once into benchmarks/.data) go through the 64-px CNN of the dense
benchmark. Prints images/s of ``classify_objects`` in this process, with 1 and 2 worker processes, and of a plain
loop (open each photo, read it resized to 64 x 64, normalise, run the model in batches), and the ratio of 2
workers to 1 (target >= 1.7).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import rasterio
from rasterio.enums import Resampling

from geoclassify import classify_objects

import data
from baseline import MEAN, STD

SIZE = data.TINY_CHIP


def photos(count: int, seed: int = 7) -> Path:
    """``count`` photos, two PNGs to one JPEG, of smooth content with some noise (so they compress as photos do)."""
    folder = data.CACHE / f"photos_{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for i in range(count):
            height, width = (int(v) for v in rng.integers(64, 257, 2))
            coarse = rng.integers(0, 256, (3, height // 16 + 1, width // 16 + 1)).astype(np.float32)
            smooth = coarse.repeat(16, axis=1).repeat(16, axis=2)[:, :height, :width]
            pixels = np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
            driver, suffix = ("JPEG", "jpg") if i % 3 == 0 else ("PNG", "png")
            with rasterio.open(
                folder / f"photo{i:05d}.{suffix}", "w", driver=driver, width=width, height=height, count=3,
                dtype="uint8",
            ) as dst:  # fmt: skip
                dst.write(pixels)
    done.touch()
    return folder


def plain_loop(paths: list[Path], model_path: Path, batch_size: int = 64) -> float:
    """Images per second of the loop a careful script writes: open, resize while reading, normalise, classify."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    batch: list[np.ndarray] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for path in paths:
            with rasterio.open(path) as src:
                chip = src.read([1, 2, 3], out_shape=(3, SIZE, SIZE), resampling=Resampling.bilinear)
            batch.append((chip.astype(np.float32) - MEAN) / STD)
            if len(batch) == batch_size:
                session.run(None, {"input": np.stack(batch)})
                batch = []
        if batch:
            session.run(None, {"input": np.stack(batch)})
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    args = parser.parse_args()
    started = time.perf_counter()
    folder = photos(args.images)
    onnx_model = data.tiny_cnn()
    model = data.dlpk(onnx_model, SIZE, blacken=0)
    print(f"data ready in {time.perf_counter() - started:.1f} s: {args.images:,} photos in {folder}")
    rates: dict[str, float] = {}
    out = data.CACHE / "collections_out.csv"
    for label, factor in (("in process", None), ("1 worker", 1), ("2 workers", 2)):
        summary = classify_objects(folder, model, out=out, overwrite=True, parallel_factor=factor)
        assert summary.read == args.images and summary.classified == args.images, summary
        rates[label] = summary.read / summary.seconds
    rates["plain loop (in process)"] = plain_loop(sorted(p for p in folder.iterdir() if p.suffix != ""), onnx_model)
    print("| run | images/s |")
    print("|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:,.0f} |")
    print(
        f"\nratio: 2 workers = {rates['2 workers'] / rates['1 worker']:.2f}x one worker (target >= 1.7); "
        f"{rates['2 workers'] / rates['plain loop (in process)']:.2f}x the plain loop; in process "
        f"{rates['in process'] / rates['plain loop (in process)']:.2f}x the plain loop"
    )


if __name__ == "__main__":
    main()
