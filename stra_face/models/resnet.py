"""ResNet50 and its attention variants (StRA, SE, non-local, SASA), one bottleneck for all.

Layer names and shapes match torchvision's resnet50, so plain resnet50 has exactly its
parameters and FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .baselines import LocalSelfAttention, NonLocal, SqueezeExcite
from .stra import StRA, StRAConfig

# (in_channels, out_channels, stride) -> module replacing the 3x3 conv of a bottleneck.
SpatialFactory = Callable[[int, int, int], nn.Module]
Variant = Literal["plain", "stra", "se", "nonlocal", "sasa"]


def conv3x3(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, spatial: SpatialFactory, squeeze_excite: bool):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = spatial(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcite(out_channels) if squeeze_excite else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


@dataclass(frozen=True)
class ResNetConfig:
    variant: Variant = "plain"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    in_chans: int = 3
    # 4: torchvision's 7x7/2 conv + max-pool (ImageNet, 112x112 faces, 256x128 ReID);
    # 2: 3x3/1 conv + max-pool; 1: 3x3/1 conv only (small inputs such as 48x48 FER2013).
    stem_stride: Literal[1, 2, 4] = 4
    last_stride: Literal[1, 2] = 2
    stra: StRAConfig = StRAConfig()
    sasa_kernel_size: int = 7
    nonlocal_blocks: tuple[int, int] = (2, 3)  # in layer2 and layer3 (last blocks), as in AGW
    zero_init_residual: bool = True


class ResNet(nn.Module):
    """Feature extractor: returns the last stage's map (B, 2048, H/32 or H/16, ...)."""

    def __init__(self, config: ResNetConfig = ResNetConfig()):
        super().__init__()
        self.config = config
        self.num_features = 512 * Bottleneck.expansion
        self.stem = self._make_stem(config)
        in_channels = 64
        for index, (blocks, width) in enumerate(zip(config.layers, (64, 128, 256, 512))):
            stride = 1 if index == 0 else (config.last_stride if index == 3 else 2)
            stage = []
            for block in range(blocks):
                stage.append(
                    Bottleneck(
                        in_channels,
                        width,
                        stride if block == 0 else 1,
                        self._spatial_factory(index),
                        config.variant == "se",
                    )
                )
                in_channels = width * Bottleneck.expansion
                if config.variant == "nonlocal" and index in (1, 2):
                    wanted = config.nonlocal_blocks[index - 1]
                    if block >= blocks - wanted:
                        stage.append(NonLocal(in_channels))
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
        self._init_weights(config.zero_init_residual)

    @staticmethod
    def _make_stem(config: ResNetConfig) -> nn.Sequential:
        if config.stem_stride == 4:
            conv = nn.Conv2d(config.in_chans, 64, 7, stride=2, padding=3, bias=False)
        else:
            conv = nn.Conv2d(config.in_chans, 64, 3, stride=1, padding=1, bias=False)
        layers = [conv, nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        if config.stem_stride > 1:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        return nn.Sequential(*layers)

    def _spatial_factory(self, stage_index: int) -> SpatialFactory:
        """StRA and SASA replace the 3x3 convs of the last stage only (the authors' placement)."""
        config = self.config
        if stage_index == 3 and config.variant == "stra":
            return lambda cin, cout, stride: StRA(cin, cout, stride, config.stra)
        if stage_index == 3 and config.variant == "sasa":
            return lambda cin, cout, stride: LocalSelfAttention(
                cin, cout, stride, heads=config.stra.groups, kernel_size=config.sasa_kernel_size
            )
        return conv3x3

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, NonLocal):
                nn.init.zeros_(module.out[1].weight)
            if zero_init_residual and isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)  # each residual branch starts as identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
