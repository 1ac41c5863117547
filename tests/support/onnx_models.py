"""Small ONNX models built with onnx.helper, whose outputs the tests can compute by hand with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mean_linear_model(
    path: Path,
    weights: np.ndarray,
    bias: np.ndarray,
    channels: int,
    height: int | str = 64,
    width: int | str = 64,
    batch: int | str = "batch",
    softmax: bool = False,
) -> Path:
    """scores = mean over pixels of each channel, times ``weights.T`` (classes x channels), plus ``bias``."""
    weights = np.asarray(weights, dtype=np.float32)
    classes = weights.shape[0]
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits" if not softmax else "raw"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw"], ["logits"], axis=1))
    return save_graph(path, nodes, "mean_linear", [batch, channels, height, width], [batch, classes], weights, bias)


def expected_scores(normalised_chips: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What :func:`mean_linear_model` returns, computed in numpy."""
    means = normalised_chips.reshape(*normalised_chips.shape[:2], -1).mean(axis=2)
    return means @ np.asarray(weights).T + np.asarray(bias)


def flat_linear_model(
    path: Path, weights: np.ndarray, bias: np.ndarray, channels: int, height: int, width: int
) -> Path:
    """scores = flattened chip times ``weights.T`` + ``bias``: every pixel position matters, so a chip cut a
    pixel off gives other scores."""
    weights = np.asarray(weights, dtype=np.float32)
    classes = weights.shape[0]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
    ]
    return save_graph(path, nodes, "flat_linear", ["batch", channels, height, width], ["batch", classes], weights, bias)


def save_graph(
    path: Path,
    nodes: list,
    name: str,
    input_shape: list,
    output_shape: list,
    weights: np.ndarray,
    bias: np.ndarray,
    constants: dict[str, np.ndarray] | None = None,
) -> Path:
    """One graph "input" -> nodes -> "logits" with initialisers W, B and any named ``constants``, checked and saved."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape)],
        initializer=[
            numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W"),
            numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "B"),
            *(numpy_helper.from_array(value, key) for key, value in (constants or {}).items()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def failing_onnx(path: Path) -> Path:
    """A model of 3 x 16 x 16 chips that fails on marked ones: it reshapes to [-1, 768] normally, but to the
    impossible [-1, -1] when a chip's first pixel is very bright."""
    first = helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["corner"])
    nodes = [
        first,
        helper.make_node("Greater", ["corner", "threshold"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["bright_int"], to=TensorProto.INT64),
        helper.make_node("ReduceMax", ["bright_int"], ["flag"], keepdims=0),
        helper.make_node("Mul", ["flag", "delta"], ["shift"]),
        helper.make_node("Add", ["shape", "shift"], ["target"]),
        helper.make_node("Reshape", ["input", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
    ]
    constants = {
        "starts": np.array([0, 0, 0], np.int64),
        "ends": np.array([1, 1, 1], np.int64),
        "axes": np.array([1, 2, 3], np.int64),
        "threshold": np.array(2.0, np.float32),
        "delta": np.array([0, -769], np.int64),
        "shape": np.array([-1, 768], np.int64),
    }
    weights = np.random.default_rng(0).normal(size=(2, 768)).astype(np.float32) / 28
    return save_graph(
        path, nodes, "fails_on_marker", ["batch", 3, 16, 16], ["batch", 2], weights, np.zeros(2), constants
    )
