"""Regenerate the bundled sample: a synthetic orthophoto, its house footprints and a roof-damage .dlpk.

Run from the repository root (torch is a development extra, not a runtime dependency)::

    PYTHONPATH=src python scripts/make_sample.py

It paints training scenes, cuts one chip per house with its own implementation of the Esri chip convention
(deliberately independent of the library, so the library can be tested against it), trains a small CNN,
reports accuracy on fresh scenes, exports ONNX, packs EMD + ONNX into a .dlpk and writes the bundled scene.
Everything is seeded: the same arguments give the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyogrio
import rasterio
import shapely
import torch
from affine import Affine
from rasterio.enums import Compression, PhotometricInterp
from rasterio.io import MemoryFile
from torch import nn

from geoclassify import sample
from geoclassify.sample import synthetic

REPO = Path(__file__).resolve().parents[1]
CHIP = 64  # ImageWidth = ImageHeight, CropSizeFixed: 1
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0  # ImageNet, as arcgis.learn without stats
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0
MODEL_STEM = Path(sample.MODEL).stem  # roof-damage
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class ChipSet:
    """Chips (uint8, N x 3 x 64 x 64, blackened) and their class indexes (position in CLASS_INFO)."""

    chips: np.ndarray
    labels: np.ndarray

    @staticmethod
    def concat(sets: list[ChipSet]) -> ChipSet:
        return ChipSet(np.concatenate([s.chips for s in sets]), np.concatenate([s.labels for s in sets]))


# --- chips: the Esri convention, implemented here on purpose -------------------------------------------


def cut_chips(image: np.ndarray, transform: Affine, polygons: list[shapely.Geometry]) -> np.ndarray:
    """One 64 x 64 chip per footprint, exactly as the library is meant to cut it.

    Centre = centre of the footprint's envelope in continuous pixel coordinates; the window starts at
    floor(centre - 32 + 0.5) on each axis; pixels beyond the raster are 0; pixels whose centre is outside
    the footprint are 0 in every band (BlackenAroundFeature).
    """
    if transform.b != 0 or transform.d != 0 or transform.e >= 0:
        raise ValueError("expected a north-up raster")
    x0, y0, res_x, res_y = transform.c, transform.f, transform.a, -transform.e
    _, height, width = image.shape
    chips = np.zeros((len(polygons), image.shape[0], CHIP, CHIP), np.uint8)
    steps = np.arange(CHIP) + 0.5
    for i, polygon in enumerate(polygons):
        minx, miny, maxx, maxy = polygon.bounds
        col = ((minx + maxx) / 2 - x0) / res_x
        row = (y0 - (miny + maxy) / 2) / res_y
        col_off, row_off = math.floor(col - CHIP / 2 + 0.5), math.floor(row - CHIP / 2 + 0.5)
        r0, r1 = max(row_off, 0), min(row_off + CHIP, height)
        c0, c1 = max(col_off, 0), min(col_off + CHIP, width)
        if r0 < r1 and c0 < c1:
            chips[i, :, r0 - row_off : r1 - row_off, c0 - col_off : c1 - col_off] = image[:, r0:r1, c0:c1]
        xs, ys = np.meshgrid(x0 + (col_off + steps) * res_x, y0 - (row_off + steps) * res_y)
        chips[i][:, ~shapely.contains_xy(polygon, xs, ys)] = 0
    return chips


def normalise(chips: np.ndarray) -> np.ndarray:
    """(x - 255 * mean) / (255 * std) per channel, float32 NCHW: what the model sees at inference."""
    return (chips.astype(np.float32) - MEAN[:, None, None]) / STD[:, None, None]


def jpeg_roundtrip(scene: synthetic.Scene) -> np.ndarray:
    """The scene's pixels after the same JPEG/YCbCr encoding as the shipped orthophoto."""
    with MemoryFile() as memfile:
        with memfile.open(**synthetic.geotiff_profile(scene)) as dst:
            dst.write(scene.image)
        with memfile.open() as src:
            return src.read()


def scene_chips(seed: int) -> ChipSet:
    scene = synthetic.make_scene(seed)
    chips = cut_chips(jpeg_roundtrip(scene), scene.transform, list(scene.houses.geometry))
    labels = np.array([synthetic.CLASSES.index(t) for t in scene.houses["Truth"]], np.int64)
    return ChipSet(chips, labels)


# --- model ---------------------------------------------------------------------------------------------


def build_model() -> nn.Sequential:
    """Four conv blocks, global average pooling, one linear layer: ~47k weights, ~0.2 MB as ONNX."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 16), nn.MaxPool2d(2),
        *block(16, 32), nn.MaxPool2d(2),
        *block(32, 48), nn.MaxPool2d(2),
        *block(48, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, len(synthetic.CLASSES)),
    )  # fmt: skip


def dihedral(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random one of the 8 flips/rotations per chip: a roof seen from above has no preferred orientation."""
    choice = torch.randint(0, 8, (len(batch),), generator=generator)
    out = batch.clone()
    for t in range(8):
        idx = (choice == t).nonzero().flatten()
        if idx.numel():
            moved = torch.rot90(batch[idx], t % 4, dims=(2, 3))
            out[idx] = moved.flip(3) if t >= 4 else moved
    return out


def train(model: nn.Module, data: ChipSet, epochs: int, batch_size: int, lr: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(normalise(data.chips))
    y = torch.from_numpy(data.labels)
    steps = math.ceil(len(x) / batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs * steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, epochs + 1):
        model.train()
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(x), generator=generator)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            logits = model(dihedral(x[idx], generator))
            loss = loss_fn(logits, y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        print(
            f"  epoch {epoch:2d}/{epochs}: loss {total_loss / len(x):.4f}, "
            f"train accuracy {correct / len(x):.3f}, {time.perf_counter() - start:.1f} s",
            flush=True,
        )


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    torch.onnx.export(
        model, (torch.zeros(1, 3, CHIP, CHIP),), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )  # fmt: skip
    onnx.checker.check_model(onnx.load(str(path)))


def predict_onnx(session: ort.InferenceSession, chips: np.ndarray) -> np.ndarray:
    batches = [normalise(chips[i : i + 256]) for i in range(0, len(chips), 256)]
    return np.concatenate([session.run(["logits"], {"input": batch})[0] for batch in batches])


def report(name: str, predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per-class and overall accuracy, printed and returned for the README."""
    scores = {"overall": float((predicted == labels).mean())}
    for k, cls in enumerate(synthetic.CLASSES):
        scores[cls] = float((predicted[labels == k] == k).mean())
    detail = ", ".join(
        f"{cls} {scores[cls]:.1%} (n={int((labels == k).sum())})" for k, cls in enumerate(synthetic.CLASSES)
    )
    print(f"{name}: overall {scores['overall']:.1%} of {len(labels)} houses; {detail}")
    return scores


# --- packaging -----------------------------------------------------------------------------------------


def emd(description: str) -> dict[str, object]:
    cell = {"x": 0.25, "y": 0.25, "spatialReference": {"wkid": 32633}}
    return {
        "Framework": "ONNX",
        "ModelConfiguration": "FeatureClassifier",
        "ModelType": "ObjectClassification",
        "ModelFile": f"{MODEL_STEM}.onnx",
        "ModelName": "RoofDamageClassifier",
        "Description": description,
        "ImageWidth": CHIP,
        "ImageHeight": CHIP,
        "ExtractBands": [0, 1, 2],
        "CropSizeFixed": 1,
        "BlackenAroundFeature": 1,
        "ImageSpaceUsed": "MAP_SPACE",
        "ModelOutput": "logits",
        "MinCellSize": cell,
        "MaxCellSize": cell,
        "Version": "2026.11",
        "Classes": synthetic.CLASS_INFO,
    }


def write_dlpk(path: Path, members: dict[str, bytes]) -> None:
    """A zip with fixed timestamps and attributes, so an unchanged model gives a byte-identical file."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def check_orthophoto(path: Path) -> None:
    with rasterio.open(path) as src:
        profile = src.profile
        print(
            f"{path.name}: {src.width}x{src.height}x{src.count} {src.dtypes[0]}, {src.crs}, "
            f"res {src.res}, origin ({src.transform.c}, {src.transform.f}), blocks {src.block_shapes[0]}, "
            f"compression {src.compression.name if src.compression else None}, "
            f"photometric {src.photometric.name if src.photometric else None}"
        )
        assert src.crs.to_epsg() == 32633, src.crs
        assert profile["tiled"] and src.block_shapes[0] == (256, 256), src.block_shapes
        assert src.compression == Compression.jpeg and src.photometric == PhotometricInterp.ycbcr


README = """\
# Bundled sample data (synthetic)

Everything here is synthetic: painted by `geoclassify.sample.synthetic` and trained by
`scripts/make_sample.py`. No real place, building or person is depicted. Licence: Apache-2.0, the same as
the project.

- `orthophoto.tif` ({image_kb} KB): {size} x {size} px RGB orthophoto of a storm-hit suburb,
  0.25 m pixels, EPSG:32633, top-left origin {origin}; uint8, tiled 256 x 256,
  JPEG (YCbCr, quality 90).
- `houses.gpkg` ({features_kb} KB): layer `houses`, {n_houses} footprint polygons with `house_id`,
  `Truth` (the painted ground truth: {n_intact} `Intact`, {n_damaged} `Damaged`) and `roof_material`.
- `roof-damage.dlpk` ({dlpk_kb} KB): Esri deep learning package, `roof-damage.emd` + `roof-damage.onnx`
  (a {n_params}-weight CNN, {onnx_kb} KB). Classes: 1 = Intact, 2 = Damaged.

## How it was made

```
{command}
```

- Bundled scene: seed {bundled_seed}.
- Training: {n_train} scenes, seeds {train_seeds} ({n_train_chips} houses), {epochs} epochs,
  torch seed {torch_seed}, CPU. Training scenes go through the same JPEG encoding as the orthophoto;
  chips get random flips and rotations.
- Evaluation: {n_eval} fresh scenes never used in training, seeds {eval_seeds}.

## Model input (what the library must reproduce)

One 64 x 64 chip per feature at native resolution (`CropSizeFixed: 1`), bands `[0, 1, 2]`; centre = centre
of the feature's envelope in continuous pixel coordinates (col = (x - x0) / res, row = (y0 - y) / res);
window offset = floor(centre - 32 + 0.5) on each axis; pixels beyond the raster are 0; pixels whose centre
lies outside the footprint are 0 (`BlackenAroundFeature: 1`); then (x - 255 * mean) / (255 * std) with
ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), float32, NCHW. Output `logits`
(batch, 2), index = position in `Classes`.

## Accuracy (the packaged ONNX model)

| Data | Houses | Overall | Intact | Damaged |
| --- | --- | --- | --- | --- |
| Fresh scenes {eval_seeds} | {n_eval_chips} | {ev[overall]:.1%} | {ev[Intact]:.1%} | {ev[Damaged]:.1%} |
| This orthophoto, read from disk | {n_houses} | {bu[overall]:.1%} | {bu[Intact]:.1%} | {bu[Damaged]:.1%} |
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "src/geoclassify/sample/data")
    parser.add_argument("--train-scenes", type=int, default=60)
    parser.add_argument("--train-seed-start", type=int, default=1000)
    parser.add_argument("--eval-scenes", type=int, default=4)
    parser.add_argument("--eval-seed-start", type=int, default=9000)
    parser.add_argument("--bundled-seed", type=int, default=2026)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--torch-seed", type=int, default=0)
    parser.add_argument("--min-accuracy", type=float, default=0.95, help="fail below this held-out accuracy")
    return parser


def train_and_package(args: argparse.Namespace, out: Path) -> tuple[ort.InferenceSession, dict[str, object]]:
    """Train on fresh chips, check the exported ONNX against torch and on held-out scenes, write the .dlpk."""
    train_seeds = range(args.train_seed_start, args.train_seed_start + args.train_scenes)
    eval_seeds = range(args.eval_seed_start, args.eval_seed_start + args.eval_scenes)
    if set(train_seeds) & set(eval_seeds) or args.bundled_seed in set(train_seeds) | set(eval_seeds):
        raise SystemExit("training, evaluation and bundled seeds must be distinct")
    start = time.perf_counter()
    train_set = ChipSet.concat([scene_chips(s) for s in train_seeds])
    eval_set = ChipSet.concat([scene_chips(s) for s in eval_seeds])
    print(
        f"{len(train_set.labels)} training chips from {len(train_seeds)} scenes, {len(eval_set.labels)} "
        f"evaluation chips from {len(eval_seeds)} fresh scenes ({time.perf_counter() - start:.1f} s)"
    )

    torch.manual_seed(args.torch_seed)
    model = build_model()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training a {n_params}-weight CNN for {args.epochs} epochs")
    start = time.perf_counter()
    train(model, train_set, args.epochs, args.batch_size, args.lr, args.torch_seed)
    print(f"training took {time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / f"{MODEL_STEM}.onnx"
        export_onnx(model, onnx_path)
        onnx_bytes = onnx_path.read_bytes()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    logits = predict_onnx(session, eval_set.chips)
    with torch.no_grad():
        reference = model(torch.from_numpy(normalise(eval_set.chips))).numpy()
    print(f"ONNX vs torch: max |logit difference| {np.abs(logits - reference).max():.2e}")
    scores = report("held-out fresh scenes", logits.argmax(1), eval_set.labels)
    if scores["overall"] < args.min_accuracy:
        raise SystemExit(f"held-out accuracy {scores['overall']:.1%} is below {args.min_accuracy:.0%}")

    description = (
        "Labels each building footprint Intact or Damaged from a 64 x 64 chip of 0.25 m RGB imagery "
        "(pixels outside the footprint blackened). Trained on synthetic scenes by geoclassify's "
        f"scripts/make_sample.py; held-out accuracy {scores['overall']:.1%}. "
        "For demonstrations and tests only."
    )
    emd_bytes = (json.dumps(emd(description), indent=2) + "\n").encode()
    write_dlpk(out / sample.MODEL, {f"{MODEL_STEM}.emd": emd_bytes, f"{MODEL_STEM}.onnx": onnx_bytes})
    facts = {
        "n_params": n_params, "onnx_kb": round(len(onnx_bytes) / 1024), "ev": scores,
        "n_train": len(train_seeds), "train_seeds": f"{train_seeds[0]}-{train_seeds[-1]}",
        "n_train_chips": len(train_set.labels), "n_eval": len(eval_seeds),
        "eval_seeds": f"{eval_seeds[0]}-{eval_seeds[-1]}", "n_eval_chips": len(eval_set.labels),
    }  # fmt: skip
    return session, facts


def write_bundled_scene(seed: int, out: Path, session: ort.InferenceSession) -> dict[str, object]:
    """Write the bundled scene, then score the model on it exactly as read back from disk."""
    scene = synthetic.make_scene(seed, size=1024)
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2026-01-01T00:00:00Z"})  # reproducible GeoPackage
    image_path, features_path = out / sample.IMAGE, out / sample.FEATURES
    synthetic.write_scene(scene, image_path, features_path)
    check_orthophoto(image_path)
    houses = pyogrio.read_dataframe(features_path, layer="houses")
    with rasterio.open(image_path) as src:
        chips = cut_chips(src.read(), src.transform, list(houses.geometry))
    labels = np.array([synthetic.CLASSES.index(t) for t in houses["Truth"]])
    scores = report("bundled orthophoto (read back)", predict_onnx(session, chips).argmax(1), labels)
    return {
        "size": scene.image.shape[1], "origin": (scene.transform.c, scene.transform.f), "bu": scores,
        "n_houses": len(labels), "n_intact": int((labels == 0).sum()), "n_damaged": int((labels == 1).sum()),
    }  # fmt: skip


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    session, facts = train_and_package(args, out)
    facts |= write_bundled_scene(args.bundled_seed, out, session)

    sizes = {name: (out / name).stat().st_size for name in (sample.IMAGE, sample.FEATURES, sample.MODEL)}
    for name, size in sizes.items():
        print(f"  {name}: {size / 1024:.0f} KB")
    print(f"  total {sum(sizes.values()) / 1024:.0f} KB")
    if sum(sizes.values()) >= 5 * 1024 * 1024:
        raise SystemExit("the bundled files exceed 5 MB")

    changed = [
        f"--{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k not in ("out_dir", "min_accuracy") and v != parser.get_default(k)
    ]
    (out / "README.md").write_text(
        README.format(
            command=" ".join(["PYTHONPATH=src python scripts/make_sample.py", *changed]),
            image_kb=round(sizes[sample.IMAGE] / 1024),
            features_kb=round(sizes[sample.FEATURES] / 1024),
            dlpk_kb=round(sizes[sample.MODEL] / 1024),
            bundled_seed=args.bundled_seed,
            epochs=args.epochs,
            torch_seed=args.torch_seed,
            **facts,
        )
    )


if __name__ == "__main__":
    main()
