"""Classifier registry: the surrogate "generator" models and evaluation victims.

Every model takes images in [0, 1] (shape ``(N, 3, H, W)``) and normalizes them
internally with the per-channel mean/std it was built with, so the noise code never
needs to know about normalization.  CIFAR-style networks keep the 3x3 stride-1 stem:
torchvision's ImageNet stem (7x7 stride 2 plus max-pool) destroys 32x32 inputs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with the statistics kept as buffers."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class BasicBlock(nn.Module):
    """The two-convolution residual block of ResNet-18."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18 (He et al.) with a width multiplier; ``width=64`` is the paper's surrogate.

    ``stem_stride`` 2 halves the resolution in the first convolution: a 64-pixel input
    then costs what a 32-pixel one does with the CIFAR stem (stride 1), which is how a
    generator for photos (64 px and more) stays affordable.
    """

    def __init__(self, num_classes: int = 10, width: int = 64,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, width, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        in_planes = width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            for s in (stride, 1):
                layers.append(BasicBlock(in_planes, width * mult, s))
                in_planes = width * mult
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=False))


class ConvNet(nn.Module):
    """A small, fast VGG-style CNN (three conv-pool stages) for CPU training and quick evaluation."""

    def __init__(self, num_classes: int = 10, width: int = 32,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD) -> None:
        super().__init__()
        w = width
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            _conv_bn(3, w), _conv_bn(w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), nn.MaxPool2d(2),
            _conv_bn(4 * w, 8 * w), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(F.adaptive_max_pool2d(out, 1).flatten(1))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, 3x3 depthwise, 1x1 projection (linear), residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 6) -> None:
        super().__init__()
        hidden = c_in * expand
        self.residual = stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """A small MobileNetV2 (Sandler et al.) with the CIFAR stem: a victim whose depthwise
    convolutions see noise differently from the ResNet-18 surrogate (transfer tests)."""

    #: (expansion, output channels as multiples of width/16, blocks, first stride)
    STAGES = ((1, 1, 1, 1), (6, 1.5, 2, 1), (6, 2, 3, 2), (6, 4, 4, 2), (6, 6, 3, 1), (6, 10, 3, 2))

    def __init__(self, num_classes: int = 10, width: int = 8,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        layers: list[nn.Module] = [nn.Conv2d(3, 2 * width, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU6()]
        c_in = 2 * width
        for expand, mult, blocks, stride in self.STAGES:
            c_out = int(width * mult)
            for i in range(blocks):
                layers.append(InvertedResidual(c_in, c_out, stride if i == 0 else 1, expand))
                c_in = c_out
        layers += [nn.Conv2d(c_in, 8 * width, 1, bias=False), nn.BatchNorm2d(8 * width), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.normalize(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class LinearClassifier(nn.Module):
    """A bias-free linear map of the raw pixels, f(x) = W · vec(x): PIL's surrogate (Liu et
    al., ICLR 2026).  ``mean`` and ``std`` are accepted like every model's and not used: the
    paper's surrogate sees pixels in [0, 1], and subtracting a mean would be a bias.  Inputs
    must be ``input_size`` square (``protect`` resizes photos to it)."""

    def __init__(self, num_classes: int = 10, input_size: int = 32,
                 mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * input_size * input_size, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(len(x), -1))


ModelFactory = Callable[..., nn.Module]

#: Registered architectures: name -> (factory, default keyword arguments).
MODELS: dict[str, tuple[ModelFactory, dict[str, int]]] = {
    "resnet18": (ResNet18, {"width": 64}),
    "convnet": (ConvNet, {"width": 32}),
    "mobilenetv2": (MobileNetV2, {"width": 8}),
    "linear": (LinearClassifier, {}),
}


def build_model(arch: str, num_classes: int, **kwargs: object) -> nn.Module:
    """Build a registered architecture; unknown names raise ``ValueError`` listing the choices."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(sorted(MODELS))}")
    factory, defaults = MODELS[arch]
    return factory(num_classes=num_classes, **{**defaults, **kwargs})
