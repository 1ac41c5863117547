"""TorchScript benchmark: the compute-bound case (the same CNN shape, 224-px chips) as a TorchScript model.

    python benchmarks/torchscript.py [--features 300] [--repeat 2]

Needs the torch extra (``pip install torch==2.13.0`` here, the CPU build). Prints end-to-end features/s of
``geoclassify classify`` against the model alone on chips in memory, in whole batches of 16 and in calls of
``CPU_PIXELS_PER_CALL`` pixels (224-px chips one a call), which is how the run calls it. ``--repeat`` measures the
three in turn that many times; the medians count.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from geoclassify import classify_objects
from geoclassify.model.backends.base import CPU_PIXELS_PER_CALL

import data
from compute import BATCH, SIZE, WIDTHS


def network() -> Path:
    """The compute-bound CNN's shape in PyTorch (random weights), traced and saved as TorchScript."""
    path = data.CACHE / "compute224_torch.pt"
    if not path.exists():
        data.CACHE.mkdir(exist_ok=True)
        torch.manual_seed(3)
        layers: list[torch.nn.Module] = []
        channels = 3
        for width in WIDTHS:
            layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            channels = width
        net = torch.nn.Sequential(
            *layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 2)
        ).eval()
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, SIZE, SIZE)), str(path))
    return path


def package() -> Path:
    return data.dlpk(network(), SIZE, Framework="PyTorch", ModelConfiguration="FeatureClassifier")


def model_alone(count: int, per_call: int) -> float:
    """Chips/s of the TorchScript module on chips in memory, ``per_call`` chips a call, PyTorch's default threads."""
    module = torch.jit.load(str(network())).eval()
    chips = torch.randn(BATCH, 3, SIZE, SIZE)
    with torch.inference_mode():
        for _ in range(3):  # TorchScript's profiling executor optimises the graph over the first calls
            module(chips[:per_call])
        started = time.perf_counter()
        done = 0
        while done < count:
            for start in range(0, BATCH, per_call):
                module(chips[start : start + per_call])
            done += BATCH
    return done / (time.perf_counter() - started)


def end_to_end(count: int) -> float:
    raster = data.raster(4096, seed=5)
    houses = data.polygons(count, 4096, seed=6, name=f"houses_compute_{count}.gpkg")
    summary = classify_objects(
        raster, package(), houses, data.CACHE / "torchscript_out.gpkg", overwrite=True, arguments={"batch_size": BATCH}
    )
    return summary.read / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    per_call = max(1, CPU_PIXELS_PER_CALL // (SIZE * SIZE))
    runs: dict[str, list[float]] = {
        "geoclassify classify (end to end)": [],
        "model alone, whole batches": [],
        "model alone, as the run calls it": [],
    }
    for _ in range(args.repeat):
        runs["geoclassify classify (end to end)"].append(end_to_end(args.features))
        runs["model alone, whole batches"].append(model_alone(args.features, BATCH))
        runs["model alone, as the run calls it"].append(model_alone(args.features, per_call))
    rates = {label: statistics.median(values) for label, values in runs.items()}
    print(f"TorchScript, {data.flops(WIDTHS, SIZE) / 1e9:.2f} GFLOP per {SIZE}-px chip, batch size {BATCH}, "
          f"{per_call} chip(s) a call, PyTorch {torch.__version__} on {torch.get_num_threads()} threads")  # fmt: skip
    print()
    print("| run | features/s (median) | each |")
    print("|---|---|---|")
    for label, rate in rates.items():
        print(f"| {label} | {rate:,.1f} | {', '.join(f'{v:,.1f}' for v in runs[label])} |")
    ours = rates["geoclassify classify (end to end)"]
    best = max(rates["model alone, whole batches"], rates["model alone, as the run calls it"])
    print(
        f"\nratio: {ours / best:.2f} of the model alone at its fastest; "
        f"{ours / rates['model alone, whole batches']:.2f}x the model alone in whole batches"
    )


if __name__ == "__main__":
    main()
