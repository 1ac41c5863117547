"""fastai v1's ``cnn_learner`` network as an ONNX graph, rebuilt from its state dict's keys and shapes.

The network is ``Sequential(body, head)``: the body is a torchvision backbone without its pooling and classifier
(resnet: ``0.0`` conv1 ... ``0.7`` layer4; mobilenet_v2: ``0.0.<i>`` features), the head fastai's
``AdaptiveConcatPool2d`` (max, then average), Flatten, BatchNorm1d, Dropout, Linear, ReLU, BatchNorm1d, Dropout,
Linear (``1.2`` ... ``1.8``). Only strides are not in a state dict; they are fixed by each architecture. In eval
mode dropout is the identity and every batch norm an affine map, so each is folded into the layer beside it: the
graph is convolutions, poolings, two Gemms and the activation arcgis.learn applies (softmax, or sigmoid for
multi-label models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ....errors import ModelMismatchError, UnsupportedModelError

#: BatchNorm's epsilon in torch (fastai keeps the default).
BN_EPS = 1e-5
OPSET = 17
#: Blocks per resnet stage, and whether they are bottlenecks, for each torchvision depth.
RESNETS = {
    "resnet18": (False, (2, 2, 2, 2)),
    "resnet34": (False, (3, 4, 6, 3)),
    "resnet50": (True, (3, 4, 6, 3)),
    "resnet101": (True, (3, 4, 23, 3)),
    "resnet152": (True, (3, 8, 36, 3)),
}
#: torchvision mobilenet_v2's inverted residual strides (features 1-17), from its (t, c, n, s) table.
MOBILENET_V2_STRIDES = (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
HEAD_KEYS = ("1.2", "1.4", "1.6", "1.8")


@dataclass(frozen=True)
class Network:
    """What a state dict holds: its backbone, bands in, classes out."""

    backbone: str
    bands: int
    classes: int


def identify(state: Mapping[str, np.ndarray], source: str) -> Network:
    """Name the backbone from the keys (and block counts), and read bands and classes from the shapes."""
    keys = state.keys()
    missing = [f"{k}.weight" for k in HEAD_KEYS if f"{k}.weight" not in state]
    if missing:
        raise UnsupportedModelError(
            f"{source}: not fastai's cnn_learner head (no {', '.join(missing)}), so not an arcgis.learn "
            "FeatureClassifier with a resnet or mobilenet_v2 backbone"
        )
    classes = int(state["1.8.weight"].shape[0])
    if "0.0.0.0.weight" in state and "0.0.1.conv.0.0.weight" in state:
        features = {int(m.group(1)) for k in keys if (m := re.match(r"0\.0\.(\d+)\.", k))}
        if features != set(range(len(MOBILENET_V2_STRIDES) + 2)):
            raise UnsupportedModelError(f"{source}: a mobilenet-like body with {len(features)} feature blocks, not 19")
        return Network("mobilenet_v2", int(state["0.0.0.0.weight"].shape[1]), classes)
    if "0.0.weight" in state and "0.4.0.conv1.weight" in state:
        bottleneck = "0.4.0.conv3.weight" in state
        blocks = tuple(
            len({int(m.group(1)) for k in keys if (m := re.match(rf"0\.{stage}\.(\d+)\.", k))}) for stage in range(4, 8)
        )
        for name, layout in RESNETS.items():
            if layout == (bottleneck, blocks):
                return Network(name, int(state["0.0.weight"].shape[1]), classes)
        kind = "bottleneck" if bottleneck else "basic"
        raise UnsupportedModelError(
            f"{source}: a resnet with {'-'.join(map(str, blocks))} {kind} blocks per stage, which is none of "
            f"{', '.join(RESNETS)}"
        )
    raise UnsupportedModelError(
        f"{source}: the body's keys ({', '.join(sorted(keys)[:3])}, ...) are neither a torchvision resnet's nor "
        "mobilenet_v2's; geoclassify rebuilds only those backbones"
    )


class _Graph:
    """Nodes and folded weights of one network, with names made unique as layers are added."""

    def __init__(self, state: Mapping[str, np.ndarray], source: str, bands: int) -> None:
        self.state = state
        self.source = source
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0
        self.channels = {"input": bands}  # channels of each feature map, for groups and residual checks
        self._six: list[str] = []

    def tensor(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.state[key], dtype=np.float64)
        except KeyError:
            raise ModelMismatchError(f"{self.source}: the state dict has no {key}") from None

    def constant(self, name: str, value: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attributes: object) -> str:
        self.count += 1
        output = output or f"{op.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{op.lower()}_{self.count}", **attributes))
        return output

    def batch_norm(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Scale and shift of a batch norm in eval mode: ``y = scale * x + shift``."""
        scale = self.tensor(f"{key}.weight") / np.sqrt(self.tensor(f"{key}.running_var") + BN_EPS)
        return scale, self.tensor(f"{key}.bias") - self.tensor(f"{key}.running_mean") * scale

    def conv_bn(self, x: str, conv: str, bn: str, stride: int = 1, activation: str | None = "Relu") -> str:
        """Conv2d (padding k // 2, groups from the weight's shape) with the batch norm after it folded in."""
        weight = self.tensor(f"{conv}.weight")
        scale, shift = self.batch_norm(bn)
        if f"{conv}.bias" in self.state:
            shift = shift + self.tensor(f"{conv}.bias") * scale
        out_channels, per_group, kh, kw = weight.shape
        in_channels = self.channels[x]
        name = conv.replace(".", "_")
        y = self.node(
            "Conv",
            [x, self.constant(f"{name}_w", weight * scale[:, None, None, None]), self.constant(f"{name}_b", shift)],
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            pads=[kh // 2, kw // 2, kh // 2, kw // 2],
            group=max(in_channels // per_group, 1),
        )
        self.channels[y] = out_channels
        if activation == "Relu":
            y = self.keep(y, self.node("Relu", [y]))
        elif activation == "Relu6":
            if not self._six:
                self._six = [self.constant("relu6_min", np.array(0.0)), self.constant("relu6_max", np.array(6.0))]
            y = self.keep(y, self.node("Clip", [y, *self._six]))
        return y

    def keep(self, before: str, after: str) -> str:
        """``after`` (an activation, a pooling, a sum) has ``before``'s channels."""
        self.channels[after] = self.channels[before]
        return after

    def add(self, a: str, b: str, relu: bool) -> str:
        y = self.keep(a, self.node("Add", [a, b]))
        return self.keep(y, self.node("Relu", [y])) if relu else y


def build_graph(
    state: Mapping[str, np.ndarray],
    network: Network,
    multi_label: bool,
    height: int | None,
    width: int | None,
    source: str,
) -> onnx.ModelProto:
    """The whole network, input ``input`` (batch, bands, height, width; normalised chips) to ``probabilities``."""
    graph = _Graph(state, source, network.bands)
    if network.backbone == "mobilenet_v2":
        features = _mobilenet_v2(graph, "input")
    else:
        features = _resnet(graph, "input", *RESNETS[network.backbone])
    probabilities = _head(graph, features, multi_label)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", network.bands, height, width])]
    outputs = [helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, ["batch", network.classes])]
    model = helper.make_model(
        helper.make_graph(graph.nodes, f"arcgis_learn_{network.backbone}", inputs, outputs, graph.weights),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="geoclassify",
    )
    helper.set_model_props(model, {"backbone": network.backbone, "source": "arcgis.learn FeatureClassifier"})
    model.ir_version = 8
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelMismatchError(f"{source}: the weights do not make a valid {network.backbone} ({exc})") from None
    return model


def _resnet(graph: _Graph, x: str, bottleneck: bool, blocks: tuple[int, ...]) -> str:
    x = graph.conv_bn(x, "0.0", "0.1", stride=2)
    x = graph.keep(x, graph.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    for stage, count in enumerate(blocks):
        for block in range(count):
            key = f"0.{stage + 4}.{block}"
            stride = 2 if stage > 0 and block == 0 else 1
            if bottleneck:  # torchvision strides the 3x3 conv (ResNet v1.5)
                y = graph.conv_bn(x, f"{key}.conv1", f"{key}.bn1")
                y = graph.conv_bn(y, f"{key}.conv2", f"{key}.bn2", stride=stride)
                y = graph.conv_bn(y, f"{key}.conv3", f"{key}.bn3", activation=None)
            else:
                y = graph.conv_bn(x, f"{key}.conv1", f"{key}.bn1", stride=stride)
                y = graph.conv_bn(y, f"{key}.conv2", f"{key}.bn2", activation=None)
            if f"{key}.downsample.0.weight" in graph.state:
                x = graph.conv_bn(x, f"{key}.downsample.0", f"{key}.downsample.1", stride=stride, activation=None)
            x = graph.add(y, x, relu=True)
    return x


def _mobilenet_v2(graph: _Graph, x: str) -> str:
    x = graph.conv_bn(x, "0.0.0.0", "0.0.0.1", stride=2, activation="Relu6")
    for index, stride in enumerate(MOBILENET_V2_STRIDES, start=1):
        key = f"0.0.{index}.conv"
        y, part = x, 0
        while f"{key}.{part}.0.weight" in graph.state:  # ConvBNReLU6: expansion (1x1), then depthwise (3x3)
            kernel = graph.state[f"{key}.{part}.0.weight"].shape[-1]
            y = graph.conv_bn(y, f"{key}.{part}.0", f"{key}.{part}.1", stride if kernel > 1 else 1, "Relu6")
            part += 1
        y = graph.conv_bn(y, f"{key}.{part}", f"{key}.{part + 1}", activation=None)  # linear projection
        x = graph.add(y, x, relu=False) if stride == 1 and graph.channels[x] == graph.channels[y] else y
    last = len(MOBILENET_V2_STRIDES) + 1
    return graph.conv_bn(x, f"0.0.{last}.0", f"0.0.{last}.1", activation="Relu6")


def _head(graph: _Graph, x: str, multi_label: bool) -> str:
    """Concat pooling (max first), then the two linear layers with the batch norm before each folded in."""
    pooled = graph.node("Concat", [graph.node("GlobalMaxPool", [x]), graph.node("GlobalAveragePool", [x])], axis=1)
    y = graph.node("Flatten", [pooled], axis=1)
    features = 2 * graph.channels[x]
    for number, (bn, linear) in enumerate((("1.2", "1.4"), ("1.6", "1.8"))):
        scale, shift = graph.batch_norm(bn)
        weight, bias = graph.tensor(f"{linear}.weight"), graph.tensor(f"{linear}.bias")
        if weight.shape[1] != len(scale) or (number == 0 and len(scale) != features):
            raise UnsupportedModelError(
                f"{graph.source}: head layer {linear} takes {weight.shape[1]} features but {bn} normalises "
                f"{len(scale)} and the body gives {features}; not fastai's cnn_learner head"
            )
        name = linear.replace(".", "_")
        y = graph.node(
            "Gemm",
            [
                y,
                graph.constant(f"{name}_w", weight * scale[None, :]),
                graph.constant(f"{name}_b", bias + weight @ shift),
            ],
            transB=1,
        )
        if number == 0:
            y = graph.node("Relu", [y])
    if multi_label:
        return graph.node("Sigmoid", [y], output="probabilities")
    return graph.node("Softmax", [y], output="probabilities", axis=1)
