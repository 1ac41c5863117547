"""Read a whole-model Keras HDF5 file (``model.save("x.h5")``, Keras 2.x) with h5py alone: no TensorFlow.

The file holds the architecture as JSON in the root attribute ``model_config`` and the weights in the group
``model_weights``: one subgroup per layer (attribute ``weight_names``, e.g. ``conv2d_1/kernel:0``) with the arrays
in Keras's own shapes (Conv2D kernels height x width x in x out, Dense kernels in x out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import ModelPackageError, UnsupportedModelError

#: Class names of whole models; one used as a layer of another is a nested model.
MODEL_CLASSES = ("Sequential", "Model", "Functional")


@dataclass(frozen=True)
class KerasLayer:
    """One layer as the file describes it: its inputs are the names of the layers that feed it."""

    name: str
    kind: str
    config: dict[str, Any]
    inputs: tuple[str, ...]
    weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class KerasModel:
    """A model's layers in an order where every layer comes after its inputs."""

    keras_version: str
    backend: str
    input_shape: tuple[int | None, int | None, int | None]  # height, width, channels
    layers: list[KerasLayer]
    output: str


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: Path, source: str) -> KerasModel:
    """The architecture and weights of a Keras HDF5 model; anything unreadable is one error naming the file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ModelPackageError(f"{source}: {path.name} is not an HDF5 file Keras wrote ({exc})") from None
    with handle:
        if "model_config" not in handle.attrs:
            what = "only weights (model.save_weights)" if "layer_names" in handle.attrs else "no Keras model"
            raise ModelPackageError(
                f"{source}: {path.name} holds {what}, without the architecture (root attribute model_config); save "
                "the whole model with model.save('model.h5')"
            )
        try:
            config = json.loads(_text(handle.attrs["model_config"]))
        except ValueError as exc:
            raise ModelPackageError(f"{source}: {path.name}: its model_config is not JSON ({exc})") from None
        weights_root = handle.get("model_weights", handle)
        layers, output = _layers(config, source)
        loaded = [_with_weights(layer, weights_root, source) for layer in layers]
        return KerasModel(
            keras_version=_text(handle.attrs.get("keras_version", "unknown")),
            backend=_text(handle.attrs.get("backend", "unknown")),
            input_shape=_input_shape(loaded, source),
            layers=loaded,
            output=output,
        )


def _layers(config: dict[str, Any], source: str) -> tuple[list[KerasLayer], str]:
    kind = config.get("class_name")
    body = config.get("config")
    if kind == "Sequential":
        entries = body if isinstance(body, list) else (body or {}).get("layers", [])
        layers: list[KerasLayer] = []
        previous: tuple[str, ...] = ()
        for entry in entries:
            layer = _layer(entry, previous, source)
            layers.append(layer)
            previous = (layer.name,)
        if not layers:
            raise ModelPackageError(f"{source}: the Keras Sequential model has no layers")
        return layers, layers[-1].name
    if kind in ("Model", "Functional"):
        return _functional(body or {}, source)
    raise UnsupportedModelError(
        f"{source}: a Keras model of class {kind!r}; geoclassify reads Sequential and functional (Model) models"
    )


def _functional(body: dict[str, Any], source: str) -> tuple[list[KerasLayer], str]:
    ends = {key: body.get(key) or [] for key in ("input_layers", "output_layers")}
    for key, names in ends.items():
        if len(names) != 1:
            raise UnsupportedModelError(
                f"{source}: the Keras model has {len(names)} {key.split('_')[0]}s; an object classifier has one"
            )
    layers = []
    for entry in body.get("layers", []):
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise UnsupportedModelError(
                f"{source}: Keras layer {entry.get('name')!r} is shared (called {len(nodes)} times), which "
                "geoclassify's Keras reader does not convert"
            )
        inputs = []
        for inbound in nodes[0] if nodes else []:
            if not isinstance(inbound, list) or inbound[1:3] != [0, 0]:
                raise UnsupportedModelError(
                    f"{source}: Keras layer {entry.get('name')!r} takes an input geoclassify's Keras reader cannot "
                    f"follow ({inbound!r})"
                )
            inputs.append(str(inbound[0]))
        layers.append(_layer(entry, tuple(inputs), source))
    known: set[str] = set()
    for layer in layers:  # Keras writes layers in call order; make sure, as the graph is built in this order
        missing = [name for name in layer.inputs if name not in known]
        if missing:
            raise ModelPackageError(f"{source}: Keras layer {layer.name!r} takes {missing[0]!r}, which comes later")
        known.add(layer.name)
    return layers, str(ends["output_layers"][0][0])


def _layer(entry: dict[str, Any], inputs: tuple[str, ...], source: str) -> KerasLayer:
    kind = str(entry.get("class_name"))
    config = dict(entry.get("config") or {})
    name = str(config.get("name") or entry.get("name"))
    if kind in MODEL_CLASSES:
        raise UnsupportedModelError(
            f"{source}: Keras layer {name!r} is a whole {kind} model nested in this one, which geoclassify's Keras "
            "reader does not convert"
        )
    return KerasLayer(name, kind, config, inputs)


def _with_weights(layer: KerasLayer, root: Any, source: str) -> KerasLayer:
    if layer.name not in root:
        return layer
    group = root[layer.name]
    weights = {}
    for weight_name in (_text(n) for n in group.attrs.get("weight_names", [])):
        short = weight_name.rsplit("/", 1)[-1].split(":", 1)[0]
        try:
            weights[short] = np.asarray(group[weight_name], dtype=np.float64)
        except KeyError:
            raise ModelPackageError(
                f"{source}: Keras layer {layer.name!r} lists weight {weight_name!r} but the file has no such array"
            ) from None
    return KerasLayer(layer.name, layer.kind, layer.config, layer.inputs, weights)


def _input_shape(layers: list[KerasLayer], source: str) -> tuple[int | None, int | None, int | None]:
    shape = layers[0].config.get("batch_input_shape") if layers else None
    if not shape or len(shape) != 4:
        raise UnsupportedModelError(
            f"{source}: the Keras model's input is {shape!r}, not (batch, height, width, bands) images"
        )
    if layers[0].config.get("data_format") == "channels_first":
        raise UnsupportedModelError(f"{source}: the Keras model takes channels-first input; Esri feeds channels last")
    height, width, channels = (int(d) if d is not None else None for d in shape[1:])
    if channels is None:
        raise UnsupportedModelError(f"{source}: the Keras model's input leaves the band count open ({shape!r})")
    return height, width, channels
