"""A Keras model (as :mod:`.h5` reads it) rebuilt as an ONNX graph, layer by layer, with ``onnx.helper``.

The graph takes geoclassify's NCHW float chips. Keras computes channels last, so every tensor carries its layout:
convolutions, poolings and everything elementwise stay NCHW (ONNX's own), and a tensor is transposed to NHWC only
where the layout shows (Flatten, Dense on images, a Softmax or Concatenate over an axis), so a plain convolutional
classifier needs no transpose at all. Dropout is the identity at inference and BatchNormalization its affine map.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ....errors import ModelMismatchError, UnsupportedModelError
from ..dialects import TF2ONNX_RECIPE
from .h5 import KerasLayer, KerasModel

OPSET = 17
#: NHWC axis -> NCHW axis.
TO_NCHW_AXIS = (0, 2, 3, 1)
ACTIVATIONS: dict[str, tuple[str, dict[str, object]]] = {
    "relu": ("Relu", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805}),
    "softplus": ("Softplus", {}),
    "softsign": ("Softsign", {}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
    "exponential": ("Exp", {}),
}
MERGES = {"Add": "Sum", "Multiply": "Mul", "Average": "Mean", "Maximum": "Max", "Minimum": "Min"}


@dataclass(frozen=True)
class _Tensor:
    """An ONNX value and what Keras would see: its rank, and whether a 4-D one is stored NCHW."""

    name: str
    rank: int
    nchw: bool = False

    def axis(self, keras_axis: int) -> int:
        """Where a Keras axis of this tensor lies in the stored value."""
        axis = keras_axis % self.rank
        return TO_NCHW_AXIS[axis] if self.nchw else axis


class _Graph:
    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0

    def constant(self, value: np.ndarray, hint: str) -> str:
        name = f"{hint}_{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: object) -> str:
        self.count += 1
        output = f"{op.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def nchw(self, x: _Tensor) -> _Tensor:
        if x.nchw or x.rank != 4:
            return x
        return _Tensor(self.node("Transpose", [x.name], perm=[0, 3, 1, 2]), 4, True)

    def keras(self, x: _Tensor) -> _Tensor:
        if not x.nchw:
            return x
        return _Tensor(self.node("Transpose", [x.name], perm=[0, 2, 3, 1]), 4, False)

    def activation(self, x: _Tensor, name: object, layer: KerasLayer) -> _Tensor:
        name = str(name or "linear")
        if name == "linear":
            return x
        if name == "softmax":
            return _Tensor(self.node("Softmax", [x.name], axis=x.axis(-1)), x.rank, x.nchw)
        if name not in ACTIVATIONS:
            raise _unsupported(self.source, layer, f"activation {name!r}")
        op, attributes = ACTIVATIONS[name]
        return _Tensor(self.node(op, [x.name], **attributes), x.rank, x.nchw)


def _unsupported(source: str, layer: KerasLayer, what: str | None = None) -> UnsupportedModelError:
    """The error for anything the converter does not cover: which layer, what it converts, and tf2onnx instead."""
    supported = ", ".join(sorted({*CONVERTERS, "InputLayer"}))
    uses = f"uses {what}, which" if what else "is a layer type"
    return UnsupportedModelError(
        f"{source}: Keras layer {layer.name!r} ({layer.kind}) {uses} geoclassify's Keras reader does not convert (it "
        f"converts {supported}). {TF2ONNX_RECIPE}"
    )


def _weight(graph: _Graph, layer: KerasLayer, key: str) -> np.ndarray:
    try:
        return layer.weights[key]
    except KeyError:
        raise ModelMismatchError(
            f"{graph.source}: Keras layer {layer.name!r} ({layer.kind}) has no {key} weights in the file"
        ) from None


def _pair(value: object) -> list[int]:
    values = [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]  # type: ignore[arg-type]
    return values * 2 if len(values) == 1 else values


def _check_channels_last(graph: _Graph, layer: KerasLayer) -> None:
    if layer.config.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(graph.source, layer, f"data_format {layer.config['data_format']!r}")


def _window(
    graph: _Graph, layer: KerasLayer, kernel: list[int], strides: list[int], dilations: list[int]
) -> dict[str, object]:
    """ONNX's kernel, stride and padding attributes for a Keras window layer.

    TensorFlow's SAME pads ``ceil(size / stride)`` outputs with the odd pixel at the end: for stride 1 that is
    ``(kernel - 1) * dilation`` pixels whatever the size, written out; for larger strides it depends on the size,
    which ONNX Runtime's SAME_UPPER works out per input (TensorFlow allows no dilation with those).
    """
    padding = layer.config.get("padding", "valid")
    window: dict[str, object] = {"kernel_shape": kernel, "strides": strides}
    if padding == "valid":
        return window
    if padding != "same":
        raise _unsupported(graph.source, layer, f"padding {padding!r}")
    if all(s == 1 for s in strides):
        totals = [(k - 1) * d for k, d in zip(kernel, dilations, strict=True)]
        return {**window, "pads": [t // 2 for t in totals] + [t - t // 2 for t in totals]}
    if any(d != 1 for d in dilations):
        raise _unsupported(graph.source, layer, "strides together with dilation")
    return {**window, "auto_pad": "SAME_UPPER"}


def _conv2d(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(graph, layer)
    if int(layer.config.get("groups", 1)) != 1:
        raise _unsupported(graph.source, layer, "grouped convolution")
    kernel = _weight(graph, layer, "kernel")  # height, width, in, out
    x = graph.nchw(inputs[0])
    names = [x.name, graph.constant(kernel.transpose(3, 2, 0, 1), "kernel")]
    if layer.config.get("use_bias", True):
        names.append(graph.constant(_weight(graph, layer, "bias"), "bias"))
    dilations = _pair(layer.config.get("dilation_rate", 1))
    window = _window(graph, layer, list(kernel.shape[:2]), _pair(layer.config.get("strides", 1)), dilations)
    y = _Tensor(graph.node("Conv", names, dilations=dilations, **window), 4, True)
    return graph.activation(y, layer.config.get("activation"), layer)


def _dense(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    kernel = graph.constant(_weight(graph, layer, "kernel"), "kernel")  # in, out
    x = graph.keras(inputs[0])
    use_bias = layer.config.get("use_bias", True)
    if x.rank == 2:
        names = [x.name, kernel] + ([graph.constant(_weight(graph, layer, "bias"), "bias")] if use_bias else [])
        y = _Tensor(graph.node("Gemm", names), 2)
    else:  # Keras applies Dense to the last axis of a higher-rank tensor
        y = _Tensor(graph.node("MatMul", [x.name, kernel]), x.rank)
        if use_bias:
            y = _Tensor(graph.node("Add", [y.name, graph.constant(_weight(graph, layer, "bias"), "bias")]), y.rank)
    return graph.activation(y, layer.config.get("activation"), layer)


def _flatten(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    _check_channels_last(graph, layer)
    x = graph.keras(inputs[0])
    return _Tensor(graph.node("Flatten", [x.name], axis=1), 2)


def _pooling(op: str) -> Callable[[_Graph, KerasLayer, list[_Tensor]], _Tensor]:
    def convert(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
        _check_channels_last(graph, layer)
        size = _pair(layer.config.get("pool_size", 2))
        strides = _pair(layer.config.get("strides") or size)
        window = _window(graph, layer, size, strides, [1, 1])
        return _Tensor(graph.node(op, [graph.nchw(inputs[0]).name], **window), 4, True)

    return convert


def _global_pooling(op: str) -> Callable[[_Graph, KerasLayer, list[_Tensor]], _Tensor]:
    def convert(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
        _check_channels_last(graph, layer)
        if layer.config.get("keepdims"):
            raise _unsupported(graph.source, layer, "keepdims")
        pooled = graph.node(op, [graph.nchw(inputs[0]).name])
        return _Tensor(graph.node("Flatten", [pooled], axis=1), 2)

    return convert


def _identity(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    return inputs[0]


def _activation(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    return graph.activation(inputs[0], layer.config.get("activation"), layer)


def _relu(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    x = inputs[0]
    if float(layer.config.get("threshold") or 0.0) != 0.0:
        raise _unsupported(graph.source, layer, "a threshold")
    slope = float(layer.config.get("negative_slope") or 0.0)
    y = graph.node("LeakyRelu", [x.name], alpha=slope) if slope else graph.node("Relu", [x.name])
    if layer.config.get("max_value") is not None:
        y = graph.node("Min", [y, graph.constant(np.array(float(layer.config["max_value"])), "max_value")])
    return _Tensor(y, x.rank, x.nchw)


def _leaky_relu(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    x = inputs[0]
    return _Tensor(graph.node("LeakyRelu", [x.name], alpha=float(layer.config.get("alpha", 0.3))), x.rank, x.nchw)


def _softmax(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    x = inputs[0]
    axis = layer.config.get("axis", -1)
    if not isinstance(axis, int):
        raise _unsupported(graph.source, layer, f"softmax over several axes ({axis!r})")
    return _Tensor(graph.node("Softmax", [x.name], axis=x.axis(axis)), x.rank, x.nchw)


def _batch_norm(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    x = inputs[0]
    axis = layer.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        raise _unsupported(graph.source, layer, f"normalisation over several axes ({axis!r})")
    mean = _weight(graph, layer, "moving_mean")
    variance = _weight(graph, layer, "moving_variance")
    gamma = _weight(graph, layer, "gamma") if layer.config.get("scale", True) else np.ones_like(mean)
    beta = _weight(graph, layer, "beta") if layer.config.get("center", True) else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + float(layer.config.get("epsilon", 1e-3)))
    offset = beta - mean * scale
    shape = [1] * x.rank
    shape[x.axis(axis)] = -1
    y = graph.node("Mul", [x.name, graph.constant(scale.reshape(shape), "bn_scale")])
    return _Tensor(graph.node("Add", [y, graph.constant(offset.reshape(shape), "bn_offset")]), x.rank, x.nchw)


def _merge(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    first = inputs[0]
    same = [graph.nchw(x) if first.nchw else graph.keras(x) for x in inputs]
    return _Tensor(graph.node(MERGES[layer.kind], [x.name for x in same]), first.rank, first.nchw)


def _concatenate(graph: _Graph, layer: KerasLayer, inputs: list[_Tensor]) -> _Tensor:
    first = inputs[0]
    same = [graph.nchw(x) if first.nchw else graph.keras(x) for x in inputs]
    axis = first.axis(int(layer.config.get("axis", -1)))
    return _Tensor(graph.node("Concat", [x.name for x in same], axis=axis), first.rank, first.nchw)


CONVERTERS: dict[str, Callable[[_Graph, KerasLayer, list[_Tensor]], _Tensor]] = {
    "Conv2D": _conv2d,
    "Dense": _dense,
    "Flatten": _flatten,
    "MaxPooling2D": _pooling("MaxPool"),
    "AveragePooling2D": _pooling("AveragePool"),
    "GlobalAveragePooling2D": _global_pooling("GlobalAveragePool"),
    "GlobalMaxPooling2D": _global_pooling("GlobalMaxPool"),
    "Dropout": _identity,
    "SpatialDropout2D": _identity,
    "Activation": _activation,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "Softmax": _softmax,
    "BatchNormalization": _batch_norm,
    "Concatenate": _concatenate,
    **dict.fromkeys(MERGES, _merge),
}


def keras_to_onnx(model: KerasModel, source: str) -> onnx.ModelProto:
    """The ONNX graph of ``model``: input ``input`` (batch, bands, height, width), output ``scores``."""
    graph = _Graph(source)
    height, width, channels = model.input_shape
    start = _Tensor("input", 4, True)
    tensors: dict[str, _Tensor] = {}
    for layer in model.layers:
        if layer.kind == "InputLayer":
            tensors[layer.name] = start
            continue
        convert = CONVERTERS.get(layer.kind)
        if convert is None:
            raise _unsupported(source, layer)
        tensors[layer.name] = convert(graph, layer, [tensors[name] for name in layer.inputs] or [start])
    result = tensors[model.output]
    if result.rank != 2 or result is start:
        raise UnsupportedModelError(
            f"{source}: the Keras model ends in a {result.rank}-D tensor ({model.output!r}), not one score per class"
        )
    graph.nodes.append(helper.make_node("Identity", [result.name], ["scores"], name="scores"))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, height, width])]
    classes = _classes(graph, inputs, result.name)
    onnx_model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "keras",
            inputs,
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
            graph.weights,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="geoclassify",
    )
    onnx_model.ir_version = 8
    last = next((node.op_type for node in graph.nodes if node.output[0] == result.name), "")
    # Esri's child reports the model's raw output as the confidence; after a softmax or sigmoid that is a probability.
    output = "probabilities" if last in ("Softmax", "Sigmoid") else ""
    for key, value in (("keras_version", model.keras_version), ("keras_backend", model.backend), ("output", output)):
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _classes(graph: _Graph, inputs: list[onnx.ValueInfoProto], result: str) -> int | None:
    """The class count, from ONNX's shape inference (the last Dense layer's units), so the model declares it."""
    probe = helper.make_model(
        helper.make_graph(
            graph.nodes, "probe", inputs, [helper.make_value_info("scores", onnx.TypeProto())], graph.weights
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    probe.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(probe)
    for info in inferred.graph.value_info:
        if info.name == result:
            dims = info.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None
