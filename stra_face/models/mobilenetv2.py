"""MobileNetV2 (torchvision's blocks) and MobileNetV2-StRA.

In the StRA variant the depthwise 3x3 convs of the stride-32 stage (blocks 14-17: the 160- and
320-channel inverted residuals) become StRA blocks: local attention is a data-dependent
depthwise filter, so it replaces the depthwise conv one for one, where ResNet50-StRA replaces
the last stage's 3x3 convs. The paper does not spell out the MobileNetV2 placement; this
mirrors the ResNet one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from .stra import StRA, StRAConfig

LAST_STAGE = range(14, 18)  # indices in torchvision's `features` of the stride-32 stage
LAST_STAGE_FIRST = 14  # the block that carries the stage's stride


@dataclass(frozen=True)
class MobileNetV2Config:
    width_mult: float = 1.0
    stra: StRAConfig | None = None  # None: plain MobileNetV2
    in_chans: int = 3
    stem_stride: Literal[1, 2] = 2
    last_stride: Literal[1, 2] = 2


class MobileNetV2(nn.Module):
    """Feature extractor: returns the final 1x1-conv map (B, 1280 * max(1, width), H/32, W/32)."""

    def __init__(self, config: MobileNetV2Config = MobileNetV2Config()):
        super().__init__()
        self.config = config
        net = mobilenet_v2(weights=None, width_mult=config.width_mult)
        self.features = net.features
        self.num_features = net.last_channel
        stem = self.features[0][0]
        if config.in_chans != 3 or config.stem_stride != 2:
            self.features[0][0] = nn.Conv2d(
                config.in_chans, stem.out_channels, 3, stride=config.stem_stride, padding=1, bias=False
            )
            nn.init.kaiming_normal_(self.features[0][0].weight, mode="fan_out")
        for index in LAST_STAGE:
            block: InvertedResidual = self.features[index]
            depthwise = block.conv[-3][0]  # Conv2dNormActivation(dw)[0]
            stride = depthwise.stride[0]
            if index == LAST_STAGE_FIRST and config.last_stride == 1:
                stride = 1
            if config.stra is not None:
                block.conv[-3][0] = StRA(depthwise.in_channels, depthwise.out_channels, stride, config.stra)
            else:
                depthwise.stride = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
