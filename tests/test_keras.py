"""Esri's Keras packages: Keras 2.2 .h5 files written here with h5py, converted to ONNX, checked against a plain numpy
forward pass, and Esri's KerasClassifier chip preparation checked against scikit-image and by hand."""

from __future__ import annotations

import json
import sys

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoclassify.errors import MissingExtraError, ModelArgumentError, ModelPackageError, UnsupportedModelError
from geoclassify.model.backends.keras.resample import KerasChips, esri_square_shape, resize_order1
from geoclassify.model.runtime import load_model

from tests.support import TWO_CLASSES, emd_for, run_classify, run_cli, write_dlpk, write_raster

h5py = pytest.importorskip("h5py")

X, Y = 500000.0, 4650000.0  # conftest.write_raster's default origin, 0.5 m pixels


# --- Keras 2.2 files, by hand ------------------------------------------------------------------------------------


def layer(kind: str, name: str, weights: dict | None = None, inbound: list[str] | None = None, **config) -> dict:
    """One layer as Keras 2.2's get_config writes it, with its weights (short name -> array, in Keras's shapes)."""
    return {
        "class_name": kind,
        "name": name,
        "config": {"name": name, "trainable": True, **config},
        "weights": weights or {},
        "inbound": inbound,
    }


def write_keras_h5(path, layers: list[dict], functional: bool = False, list_config: bool = False):
    """A whole-model HDF5 file laid out as Keras 2.2.4's ``model.save`` lays it out."""
    if functional:
        entries = [
            {
                "name": entry["name"],
                "class_name": entry["class_name"],
                "config": entry["config"],
                "inbound_nodes": [[[source, 0, 0, {}] for source in entry["inbound"]]] if entry["inbound"] else [],
            }
            for entry in layers
        ]
        config = {
            "class_name": "Model",
            "config": {
                "name": "model_1",
                "layers": entries,
                "input_layers": [[layers[0]["name"], 0, 0]],
                "output_layers": [[layers[-1]["name"], 0, 0]],
            },
        }
    else:
        entries = [{"class_name": e["class_name"], "config": e["config"]} for e in layers]
        config = {
            "class_name": "Sequential",
            "config": entries if list_config else {"name": "sequential_1", "layers": entries},
        }
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [e["name"].encode() for e in layers]
        for entry in layers:
            sub = group.create_group(entry["name"])
            names = [f"{entry['name']}/{key}:0" for key in entry["weights"]]
            sub.attrs["weight_names"] = [n.encode() for n in names]
            for name, value in zip(names, entry["weights"].values(), strict=True):
                sub.create_dataset(name, data=np.asarray(value, dtype=np.float32))
    return path


def conv(name, rng, size, cin, cout, **config):
    weights = {"kernel": rng.normal(0, 0.3, (size, size, cin, cout)), "bias": rng.normal(0, 0.1, cout)}
    return layer(
        "Conv2D",
        name,
        weights,
        filters=cout,
        kernel_size=[size, size],
        data_format="channels_last",
        strides=config.pop("strides", [1, 1]),
        padding=config.pop("padding", "valid"),
        dilation_rate=config.pop("dilation_rate", [1, 1]),
        activation=config.pop("activation", "linear"),
        use_bias=True,
        **config,
    )


def dense(name, rng, cin, units, activation="linear", **kwargs):
    weights = {"kernel": rng.normal(0, 0.3, (cin, units)), "bias": rng.normal(0, 0.1, units)}
    return layer("Dense", name, weights, units=units, activation=activation, use_bias=True, **kwargs)


def batch_norm(name, rng, channels):
    weights = {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.normal(0, 0.2, channels),
        "moving_mean": rng.normal(0, 0.5, channels),
        "moving_variance": rng.uniform(0.5, 2, channels),
    }
    return layer("BatchNormalization", name, weights, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True)


# --- A plain numpy Keras (NHWC), the independent reference ---------------------------------------------------------


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: output ceil(size / stride), the odd pixel padded at the end."""
    span = (kernel - 1) * dilation + 1
    total = max((-(-size // stride) - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def patches(x, kernel, stride, dilation, padding, fill=0.0):
    """(n, out_h, out_w, kh, kw, c) windows of an NHWC array."""
    n, h, w, c = x.shape
    if padding == "same":
        (t, b), (left, r) = same_pads(h, kernel, stride, dilation), same_pads(w, kernel, stride, dilation)
        x = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)
    span = (kernel - 1) * dilation + 1
    out_h, out_w = (x.shape[1] - span) // stride + 1, (x.shape[2] - span) // stride + 1
    out = np.empty((n, out_h, out_w, kernel, kernel, c))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, i * stride : i * stride + span : dilation, j * stride : j * stride + span : dilation]
            out[:, i, j] = window
    return out


def activate(x, name):
    if name in (None, "linear"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    raise AssertionError(name)


def reference(layers: list[dict], x: np.ndarray) -> np.ndarray:
    """Run the layers in numpy on an NHWC batch, each layer fed by its inbound layers (or the one before)."""
    out: dict[str, np.ndarray] = {}
    previous = None
    for entry in layers:
        kind, cfg, w = entry["class_name"], entry["config"], entry["weights"]
        ins = [out[name] for name in entry["inbound"]] if entry["inbound"] else [x if previous is None else previous]
        a = ins[0]
        if kind == "InputLayer":
            y = x
        elif kind == "Conv2D":
            k = w["kernel"]
            p = patches(a, k.shape[0], cfg["strides"][0], cfg["dilation_rate"][0], cfg["padding"])
            y = activate(np.einsum("nijabc,abco->nijo", p, k) + w["bias"], cfg["activation"])
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            size, stride = cfg["pool_size"][0], (cfg.get("strides") or cfg["pool_size"])[0]
            p = patches(a, size, stride, 1, cfg["padding"], fill=np.nan)  # TF ignores the padding in both
            y = np.nanmax(p, axis=(3, 4)) if kind == "MaxPooling2D" else np.nanmean(p, axis=(3, 4))
        elif kind == "GlobalAveragePooling2D":
            y = a.mean(axis=(1, 2))
        elif kind == "GlobalMaxPooling2D":
            y = a.max(axis=(1, 2))
        elif kind == "Flatten":
            y = a.reshape(len(a), -1)
        elif kind == "Dense":
            y = activate(a @ w["kernel"] + w["bias"], cfg["activation"])
        elif kind == "BatchNormalization":
            y = (a - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif kind in ("Dropout", "SpatialDropout2D"):
            y = a
        elif kind == "Activation":
            y = activate(a, cfg["activation"])
        elif kind == "ReLU":
            y = np.maximum(a, 0)
            y = np.minimum(y, cfg["max_value"]) if cfg.get("max_value") is not None else y
        elif kind == "LeakyReLU":
            y = np.where(a > 0, a, cfg["alpha"] * a)
        elif kind == "Softmax":
            y = activate(a, "softmax")
        elif kind == "Add":
            y = sum(ins)
        elif kind == "Concatenate":
            y = np.concatenate(ins, axis=cfg["axis"])
        else:
            raise AssertionError(kind)
        out[entry["name"]] = previous = y
    return previous


def keras_package(folder, layers, size: int, functional: bool = False, name: str = "HouseDamage", **emd):
    """A .dlpk as Esri's Keras sample has it: the Pro-builtin EMD (Windows ModelFile path) and the .h5."""
    model = write_keras_h5(folder / f"{name}.h5", layers, functional)
    keys = {
        "Framework": "Keras",
        "ModelConfiguration": {"Name": "KerasClassifier"},
        "ImageWidth": size,
        "ImageHeight": size,
        "CropSizeFixed": 1,
        "BlackenAroundFeature": 0,
        "ImageSpaceUsed": "MAP_SPACE",
        **emd,
    }
    return write_dlpk(folder / f"{name}.dlpk", emd_for(model_file=f".\\{name}.h5", **keys), model)


def small_cnn(rng, size: int = 16) -> list[dict]:
    return [
        conv("conv2d_1", rng, 3, 3, 8, padding="same", activation="relu", batch_input_shape=[None, size, size, 3]),
        batch_norm("batch_normalization_1", rng, 8),
        layer(
            "MaxPooling2D",
            "max_pooling2d_1",
            pool_size=[2, 2],
            strides=[2, 2],
            padding="valid",
            data_format="channels_last",
        ),
        conv("conv2d_2", rng, 3, 8, 6, strides=[2, 2], padding="same", activation="tanh"),
        layer(
            "AveragePooling2D",
            "average_pooling2d_1",
            pool_size=[3, 3],
            strides=[1, 1],
            padding="same",
            data_format="channels_last",
        ),
        layer("Flatten", "flatten_1", data_format="channels_last"),
        layer("Dropout", "dropout_1", rate=0.5),
        dense("dense_1", rng, 6 * (size // 4) ** 2, 10, "relu"),
        dense("dense_2", rng, 10, 2),
        layer("Activation", "activation_1", activation="softmax"),
    ]


# --- Conversion -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("list_config", [False, True], ids=["keras-2.2.4-config", "keras-2.2.0-list-config"])
def test_sequential_cnn_matches_numpy(tmp_path, list_config):
    rng = np.random.default_rng(3)
    layers = small_cnn(rng)
    write_keras_h5(tmp_path / "m.h5", layers, list_config=list_config)
    package = write_dlpk(tmp_path / "m.dlpk", emd_for(model_file="m.h5", Framework="Keras"), tmp_path / "m.h5")
    model = load_model(package)
    assert model.backend.framework == "Keras" and model.backend.output_classes == 2
    chips = rng.uniform(0, 255, (5, 16, 16, 3)) / 64
    got = model.backend.predict(chips.transpose(0, 3, 1, 2).astype(np.float32))
    np.testing.assert_allclose(got, reference(layers, chips), atol=1e-4)
    assert model.backend.model_output == "probabilities"


def test_functional_model_matches_numpy(tmp_path):
    rng = np.random.default_rng(4)
    layers = [
        layer("InputLayer", "input_1", batch_input_shape=[None, 12, 12, 3], dtype="float32", sparse=False),
        conv("conv2d_1", rng, 3, 3, 4, padding="same", dilation_rate=[2, 2], inbound=["input_1"]),
        layer("ReLU", "re_lu_1", inbound=["conv2d_1"], max_value=1.5, negative_slope=0.0, threshold=0.0),
        conv("conv2d_2", rng, 1, 3, 4, inbound=["input_1"]),
        layer("Add", "add_1", inbound=["re_lu_1", "conv2d_2"]),
        layer("LeakyReLU", "leaky_re_lu_1", inbound=["add_1"], alpha=0.2),
        conv("conv2d_3", rng, 3, 4, 4, strides=[2, 2], padding="same", inbound=["leaky_re_lu_1"]),
        layer(
            "MaxPooling2D",
            "max_pooling2d_1",
            inbound=["leaky_re_lu_1"],
            pool_size=[2, 2],
            strides=None,
            padding="same",
            data_format="channels_last",
        ),
        layer("Concatenate", "concatenate_1", inbound=["conv2d_3", "max_pooling2d_1"], axis=-1),
        batch_norm("batch_normalization_1", rng, 8) | {"inbound": ["concatenate_1"]},
        layer(
            "GlobalAveragePooling2D",
            "global_average_pooling2d_1",
            inbound=["batch_normalization_1"],
            data_format="channels_last",
        ),
        layer(
            "GlobalMaxPooling2D",
            "global_max_pooling2d_1",
            inbound=["batch_normalization_1"],
            data_format="channels_last",
        ),
        layer(
            "Concatenate", "concatenate_2", inbound=["global_average_pooling2d_1", "global_max_pooling2d_1"], axis=-1
        ),
        dense("dense_1", rng, 16, 3, inbound=["concatenate_2"]),
        layer("Softmax", "softmax_1", inbound=["dense_1"], axis=-1),
    ]
    write_keras_h5(tmp_path / "f.h5", layers, functional=True)
    package = write_dlpk(
        tmp_path / "f.dlpk",
        emd_for(model_file="f.h5", Framework="Keras", Classes=[*TWO_CLASSES, {"Value": 3, "Name": "Gone"}]),
        tmp_path / "f.h5",
    )
    backend = load_model(package).backend
    chips = rng.normal(0, 1, (4, 12, 12, 3))
    got = backend.predict(chips.transpose(0, 3, 1, 2).astype(np.float32))
    np.testing.assert_allclose(got, reference(layers, chips), atol=1e-4)


def test_unsupported_layer_names_it_and_gives_the_tf2onnx_recipe(tmp_path):
    rng = np.random.default_rng(0)
    layers = small_cnn(rng)
    layers.insert(1, layer("Conv2DTranspose", "conv2d_transpose_1", filters=8, kernel_size=[3, 3]))
    package = keras_package(tmp_path, layers, 16)
    with pytest.raises(UnsupportedModelError) as raised:
        load_model(package)
    message = str(raised.value)
    for fragment in (
        "'conv2d_transpose_1'",
        "Conv2DTranspose",
        "it converts Activation, Add,",
        "tf2onnx.convert --keras",
    ):
        assert fragment in message, fragment
    result = run_cli("inspect", package)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "conv2d_transpose_1" in result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"not an HDF5 file", "is not an HDF5 file Keras wrote"), ("weights-only", "holds only weights")],
)
def test_unreadable_h5_is_one_clear_error(tmp_path, content, fragment):
    path = tmp_path / "HouseDamage.h5"
    if content == "weights-only":
        with h5py.File(path, "w") as f:
            f.attrs["layer_names"] = [b"dense_1"]
    else:
        path.write_bytes(content)
    package = write_dlpk(tmp_path / "x.dlpk", emd_for(model_file="HouseDamage.h5", Framework="Keras"), path)
    with pytest.raises(ModelPackageError, match=fragment):
        load_model(package)


def test_conversion_is_cached_per_content_and_needs_no_h5py_once_made(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOCLASSIFY_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    package = keras_package(tmp_path, small_cnn(rng), 16)
    other = keras_package(tmp_path, small_cnn(np.random.default_rng(6)), 16, name="Other")
    first = load_model(package).backend.converted
    assert first.parent == tmp_path / "cache" / "converted" and not list(first.parent.glob(".convert-*"))
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now fails
    assert load_model(package).backend.converted == first
    with pytest.raises(MissingExtraError, match=r"needs h5py: pip install 'geoclassify\[keras\]'"):
        load_model(other)


def test_resampled_image_size_must_fit_a_fixed_model(tmp_path):
    package = keras_package(tmp_path, small_cnn(np.random.default_rng(0)), 16)
    model = load_model(package)
    assert model.arguments["resampled_image_size"] == 16  # the model's own size, where Esri would say 64
    wrong = load_model(package, {"resampled_image_size": "64"})
    with pytest.raises(ModelArgumentError, match=r"resampled_image_size is 64 .* set resampled_image_size=16"):
        wrong.prepare((0, 1, 2))


# --- Esri's chip preparation ------------------------------------------------------------------------------------


def esri_resize_image(chip_hwc: np.ndarray, size: int) -> np.ndarray:
    """Esri's KerasClassifier.resize_image(min_dim=size, max_dim=size, mode="square") and Resize, transcribed."""
    transform = pytest.importorskip("skimage.transform")
    image_dtype = chip_hwc.dtype
    h, w = chip_hwc.shape[:2]
    scale = max(1, size / min(h, w))
    if round(max(h, w) * scale) > size:
        scale = size / max(h, w)
    img = chip_hwc
    if scale != 1:
        img = transform.resize(
            img,
            (round(h * scale), round(w * scale)),
            order=1,
            mode="constant",
            cval=0,
            clip=True,
            preserve_range=True,
            anti_aliasing=False,
        )
    h, w = img.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    img = np.pad(img, [(top, size - h - top), (left, size - w - left), (0, 0)], mode="constant", constant_values=0)
    return img.astype(image_dtype)


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(256, 256, 64), (100, 50, 64), (37, 91, 64), (64, 64, 64), (30, 20, 64), (200, 13, 32), (5, 3, 7)],
)
def test_chip_preparation_matches_esri_code_on_skimage(height, width, size):
    rng = np.random.default_rng(height * width)
    chips = rng.integers(0, 256, (3, 3, height, width)).astype(np.uint8)
    chips[1] = 200
    chips[1, :, : height // 2] = 7  # flat areas: where a rounding error would truncate one lower
    chips[2, :, 0, 0] = 0  # a zero pixel, so the clip is the same in skimage 0.14-0.18 and >= 0.19
    chips[:2, 0, 0, 0] = 0
    got = KerasChips(size)(chips.astype(np.float32))
    expected = np.stack([esri_resize_image(c.transpose(1, 2, 0), size).transpose(2, 0, 1) for c in chips])
    assert got.dtype == np.float32 and got.shape == (3, 3, size, size)
    np.testing.assert_array_equal(got, expected)


def test_resize_matches_skimage_bit_for_bit():
    transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(11)
    for _ in range(40):
        h, w = rng.integers(2, 120, 2)
        oh, ow = rng.integers(1, 90, 2)
        chip = rng.integers(0, 4, (3, h, w)).astype(np.float64) * 85  # values 0..255 with flat patches
        ours = resize_order1(chip[None], oh, ow)[0]
        theirs = transform.resize(
            chip.transpose(1, 2, 0),
            (oh, ow),
            order=1,
            mode="constant",
            cval=0,
            clip=True,
            preserve_range=True,
            anti_aliasing=False,
        ).transpose(2, 0, 1)
        np.testing.assert_array_equal(ours, theirs)


def test_enlarging_a_chip_without_zeros_clips_as_keras_era_skimage():
    """2 x 2 to 4 x 4: each axis takes 0.75 / 0.25 of its neighbours, the zero border beyond the edge. skimage
    0.14-0.18 clip the result to the chip's range [10, 40]; then astype truncates."""
    chip = np.array([[10, 20], [30, 40]], dtype=np.float32)[None, None]
    # rows: 0.75*r0 | .75 r0 + .25 r1 | .25 r0 + .75 r1 | .75 r1, then the same along columns:
    # 5.625 9.375 13.125 11.25 / 11.25 17.5 22.5 18.75 / 18.75 27.5 32.5 26.25 / 16.875 24.375 28.125 22.5
    expected = [[10, 10, 13, 11], [11, 17, 22, 18], [18, 27, 32, 26], [16, 24, 28, 22]]
    np.testing.assert_array_equal(KerasChips(4)(chip)[0, 0], expected)
    fractions = KerasChips(4)(chip + 0.5)[0, 0]  # a float raster's chip is not truncated
    assert fractions[1, 1] == pytest.approx(0.75 * (0.75 * 10.5 + 0.25 * 30.5) + 0.25 * (0.75 * 20.5 + 0.25 * 40.5))


def test_square_padding_is_centred_with_the_odd_pixel_last():
    assert esri_square_shape(256, 128, 64) == (64, 32)
    assert esri_square_shape(4, 1, 4) == (4, 1)  # scale 1: no resize, only padding
    chip = np.arange(1, 5, dtype=np.float32).reshape(1, 1, 4, 1)
    out = KerasChips(4)(chip)[0, 0]
    np.testing.assert_array_equal(out[:, 1], [1, 2, 3, 4])
    assert not out[:, [0, 2, 3]].any()


def test_a_chip_shape_that_resizes_to_nothing_is_refused():
    with pytest.raises(ModelArgumentError, match="resizes the 256 x 1 chips"):
        KerasChips(1).check(256, 1, "m.dlpk")


# --- A whole run --------------------------------------------------------------------------------------------------


def test_classify_runs_an_esri_keras_package(tmp_path):
    """Eight uniform 144 x 144 blocks, a point at each centre, 128 x 128 chips halved to the model's 64 x 64 (each
    output pixel the mean of four equal ones: exactly the block's colour), labels from the numpy model."""
    rng = np.random.default_rng(8)
    layers = [
        conv("conv2d_1", rng, 3, 3, 4, padding="same", activation="relu", batch_input_shape=[None, 64, 64, 3]),
        layer(
            "MaxPooling2D",
            "max_pooling2d_1",
            pool_size=[2, 2],
            strides=[2, 2],
            padding="valid",
            data_format="channels_last",
        ),
        layer("GlobalAveragePooling2D", "global_average_pooling2d_1", data_format="channels_last"),
        dense("dense_1", rng, 4, 2, "softmax"),
    ]
    kernel = layers[0]["weights"]["kernel"]  # filters 0 and 1 see red minus green, and green minus red
    kernel[:, :, :, :2] = 0
    kernel[:, :, 0, 0] = kernel[:, :, 1, 1] = 0.01
    kernel[:, :, 1, 0] = kernel[:, :, 0, 1] = -0.01
    layers[-1]["weights"]["kernel"] = np.array([[1, -1], [-1, 1], [0, 0], [0, 0]]) + rng.normal(0, 0.05, (4, 2))
    package = keras_package(tmp_path, layers, 128, ExtractBands=[0, 1, 2])
    values = np.linspace(10, 250, 8).astype(np.uint8)
    colours = np.stack([values, 255 - values, np.full(8, 60, np.uint8)])  # band order matters
    raster = np.repeat(np.repeat(colours[:, None, :], 144, axis=1), 144, axis=2)
    image = write_raster(tmp_path / "blocks.tif", raster)
    points = [shapely.Point(X + (144 * i + 72) * 0.5, Y - 72 * 0.5) for i in range(8)]
    gpd.GeoDataFrame({"id": range(8)}, geometry=points, crs="EPSG:32633").to_file(tmp_path / "points.gpkg")
    result = run_classify(image, package, tmp_path / "points.gpkg", tmp_path / "out.gpkg")
    assert result.returncode == 0, result.stderr
    got = gpd.read_file(tmp_path / "out.gpkg")
    chips = np.broadcast_to(colours.T[:, None, None, :], (8, 64, 64, 3)).astype(np.float64)
    probabilities = reference(layers, chips)
    expected = [TWO_CLASSES[i]["Name"] for i in probabilities.argmax(axis=1)]
    assert list(got["ClassLabel"]) == expected and len(set(expected)) == 2
    np.testing.assert_allclose(got["Confidence"], probabilities.max(axis=1), atol=1e-4)
    shown = run_cli("inspect", package)
    assert shown.returncode == 0 and "resampled_image_size" in shown.stdout and "Keras 2.2.4" in shown.stdout
    assert "Normalise    KerasClassifier: none;" in shown.stdout and "ImageNet" not in shown.stdout
