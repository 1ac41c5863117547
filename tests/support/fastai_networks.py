"""fastai v1's cnn_learner networks (torchvision resnets and mobilenet_v2 with fastai's head) in plain torch.nn.

CI has torch but not torchvision or fastai, so the reference networks are written out here with the module layout
(and so the state dict keys) that ``cnn_learner`` gives: ``Sequential(body, head)``. Loading a state dict into them
with ``strict=True`` proves the keys a test writes are the real ones.
"""

from __future__ import annotations

import torch
from torch import nn

RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
#: torchvision mobilenet_v2's inverted residual settings: expansion t, channels c, repeats n, first stride s.
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # torchvision strides the 3x3 conv
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _downsample(inplanes: int, outplanes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))


def resnet_body(name: str, bands: int) -> tuple[nn.Sequential, int]:
    """torchvision's resnet children without avgpool and fc (fastai's cut -2), and its feature count."""
    kind, counts = RESNET_LAYOUTS[name]
    block = BasicBlock if kind == "basic" else Bottleneck
    layers: list[nn.Module] = [
        nn.Conv2d(bands, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), counts, strict=True)):
        blocks = []
        for index in range(count):
            blocks.append(block(inplanes, planes, 2 if stage > 0 and index == 0 else 1))
            inplanes = planes * block.expansion
        layers.append(nn.Sequential(*blocks))
    return nn.Sequential(*layers), inplanes


def _conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_body(bands: int) -> tuple[nn.Sequential, int]:
    """torchvision mobilenet_v2 without its classifier (arcgis.learn's cut -1): ``Sequential(features)``."""
    features: list[nn.Module] = [_conv_bn_relu6(bands, 32, stride=2)]
    inp = 32
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for index in range(n):
            features.append(InvertedResidual(inp, c, s if index == 0 else 1, t))
            inp = c
    features.append(_conv_bn_relu6(inp, 1280, kernel=1))
    return nn.Sequential(nn.Sequential(*features)), 1280


class AdaptiveConcatPool2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d(1)
        self.mp = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], 1)


def fastai_head(nf: int, classes: int) -> nn.Sequential:
    """fastai v1's create_head(2 * nf, classes) with its defaults (lin_ftrs [512], ps 0.5, concat pooling)."""
    return nn.Sequential(
        AdaptiveConcatPool2d(),
        nn.Flatten(),
        nn.BatchNorm1d(2 * nf),
        nn.Dropout(0.25),
        nn.Linear(2 * nf, 512),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(512),
        nn.Dropout(0.5),
        nn.Linear(512, classes),
    )


def cnn_learner_model(
    backbone: str, bands: int, classes: int, seed: int = 0, size: int = 64, calibration: torch.Tensor | None = None
) -> nn.Sequential:
    """A network laid out as cnn_learner builds it, with random weights and batch-norm statistics that a forward
    pass over ``calibration`` chips (default: 4 of ``size`` pixels, standard normal) set, so deep nets neither
    explode nor collapse, then random affine terms."""
    torch.manual_seed(seed)
    body, nf = mobilenet_v2_body(bands) if backbone == "mobilenet_v2" else resnet_body(backbone, bands)
    model = nn.Sequential(body, fastai_head(nf, classes))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # cumulative averages over the calibration pass
    if calibration is None:
        calibration = torch.randn(4, bands, size, size)
    model.train()
    with torch.no_grad():
        model(calibration)
        for norm in norms:
            norm.weight.uniform_(0.6, 1.4)
            norm.bias.normal_(0.0, 0.2)
        model.eval()
        # Logits of about unit spread: probabilities neither all equal nor saturated, so comparisons mean something.
        spread = float(model(calibration).std())
        model[1][8].weight.mul_(1.5 / spread)
        model[1][8].bias.mul_(1.5 / spread)
    return model


def reference_probabilities(model: nn.Module, chips, multi_label: bool = False):
    """The network's activated output (softmax, or sigmoid for multi-label), as fastai's pred_batch returns it."""
    import numpy as np

    with torch.no_grad():
        logits = model(torch.as_tensor(np.asarray(chips, dtype=np.float32)))
    return (torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)).numpy()
