"""Converting arcgis.learn FeatureClassifier weights: seconds per backbone, and how far the ONNX answers are from
the same network in torch (the reference networks of tests/fastai_networks.py; needs torch, not torchvision).

    python benchmarks/arcgis_learn.py [--size 224] [--chips 8] [BACKBONE ...]

For each backbone: a fastai-layout network with random weights is saved as arcgis.learn saves it (torch's legacy
format), packaged with an EMD, and loaded twice through geoclassify in a fresh cache: the first load converts (read
the .pth, rebuild, check and write the ONNX graph), the second finds the conversion cached. Then ``--chips`` random
chips of ``--size`` pixels go through both networks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "mobilenet_v2")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])[None, :, None, None] * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225])[None, :, None, None] * 255


def measure(backbone: str, size: int, chips: int, folder: Path) -> dict[str, float]:
    import torch
    from fastai_networks import cnn_learner_model, reference_probabilities

    from geoclassify.model.runtime import load_model

    rng = np.random.default_rng(0)
    normalise = lambda pixels: ((pixels - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)  # noqa: E731
    calibration = torch.as_tensor(normalise(rng.integers(0, 256, (4, 3, size, size))))
    net = cnn_learner_model(backbone, 3, 5, calibration=calibration)
    torch.save(net.state_dict(), folder / "model.pth", _use_new_zipfile_serialization=False)
    emd = {
        "Framework": "arcgis.learn.models._inferencing",
        "ModelConfiguration": "_FeatureClassifier",
        "ModelType": "ObjectClassification",
        "ModelFile": "model.pth",
        "ImageHeight": size,
        "ImageWidth": size,
        "ExtractBands": [0, 1, 2],
        "CropSizeFixed": 1,
        "BlackenAroundFeature": 0,
        "ModelParameters": {"backbone": backbone},
        "Classes": [{"Value": i, "Name": f"class {i}"} for i in range(5)],
    }
    (folder / "model.emd").write_text(json.dumps(emd))
    started = time.perf_counter()
    model = load_model(folder / "model.emd")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    load_model(folder / "model.emd")
    warm = time.perf_counter() - started
    normalised = normalise(rng.integers(0, 256, (chips, 3, size, size)))
    probabilities = model.predict(normalised)
    expected = reference_probabilities(net, normalised)
    return {
        "megabytes": (folder / "model.pth").stat().st_size / 1e6,
        "conversion_s": model.backend.conversion.seconds,
        "first_load_s": cold,
        "cached_load_s": warm,
        "max_probability_difference": float(np.abs(probabilities - expected).max()),
        "top_probability": (float(expected.max(axis=1).min()), float(expected.max(axis=1).max())),
        "labels_equal": bool((probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", default=BACKBONES)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--chips", type=int, default=8)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GEOCLASSIFY_CACHE_DIR"] = cache
        header = f"{'backbone':<13} {'.pth MB':>8} {'convert s':>10} {'1st load s':>11} {'cached s':>9} {'max |dp|':>9}"
        print(header + "  top p")
        for backbone in options.backbones:
            with tempfile.TemporaryDirectory() as folder:
                row = measure(backbone, options.size, options.chips, Path(folder))
            print(
                f"{backbone:<13} {row['megabytes']:>8.1f} {row['conversion_s']:>10.2f} {row['first_load_s']:>11.2f} "
                f"{row['cached_load_s']:>9.2f} {row['max_probability_difference']:>9.1e}  "
                f"{row['top_probability'][0]:.2f}-{row['top_probability'][1]:.2f}"
                + ("" if row["labels_equal"] else "  LABELS DIFFER")
            )


if __name__ == "__main__":
    main()
