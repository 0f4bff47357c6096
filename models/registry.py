"""Model registry: `create_model("resnet50_stra", num_classes=7, in_chans=1, ...)`, timm-style."""
from __future__ import annotations

from dataclasses import fields
from typing import Callable

from torch import nn

from .heads import Network
from .mobilenetv2 import MobileNetV2, MobileNetV2Config
from .resnet import ResNet, ResNetConfig
from .stra import StRAConfig

BackboneBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, BackboneBuilder] = {}

_HEAD_ARGS = ("num_classes", "embedding_dim", "dropout", "embedding_pool", "input_size")


def register_model(fn: BackboneBuilder) -> BackboneBuilder:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> Network:
    """Build a registered backbone with heads.

    Head arguments: num_classes, embedding_dim, dropout, embedding_pool ("avg"/"flatten"),
    input_size. Backbone arguments: in_chans, stem_stride, last_stride, and for the StRA
    variants `stra=StRAConfig(...)` or any StRAConfig field directly (groups=4,
    mode_attention=False, gating="softmax", ...).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    head_kwargs = {k: kwargs.pop(k) for k in _HEAD_ARGS if k in kwargs}
    stra_fields = {f.name for f in fields(StRAConfig)}
    stra_overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in stra_fields}
    stra = kwargs.pop("stra", StRAConfig()).with_overrides(**stra_overrides)
    backbone = _REGISTRY[name](stra=stra, **kwargs)
    return Network(backbone, **head_kwargs)


def _resnet50(variant: str, stra: StRAConfig, **kwargs) -> ResNet:
    return ResNet(ResNetConfig(variant=variant, stra=stra, **kwargs))


@register_model
def resnet50(stra: StRAConfig, **kwargs) -> ResNet:
    return _resnet50("plain", stra, **kwargs)


@register_model
def resnet50_stra(stra: StRAConfig, **kwargs) -> ResNet:
    return _resnet50("stra", stra, **kwargs)


@register_model
def se_resnet50(stra: StRAConfig, **kwargs) -> ResNet:
    return _resnet50("se", stra, **kwargs)


@register_model
def nonlocal_resnet50(stra: StRAConfig, **kwargs) -> ResNet:
    return _resnet50("nonlocal", stra, **kwargs)


@register_model
def sasa_resnet50(stra: StRAConfig, **kwargs) -> ResNet:
    return _resnet50("sasa", stra, **kwargs)


def _mobilenetv2(width_mult: float, stra: StRAConfig | None, **kwargs) -> MobileNetV2:
    return MobileNetV2(MobileNetV2Config(width_mult=width_mult, stra=stra, **kwargs))


@register_model
def mobilenetv2_100(stra: StRAConfig, **kwargs) -> MobileNetV2:
    return _mobilenetv2(1.0, None, **kwargs)


@register_model
def mobilenetv2_140(stra: StRAConfig, **kwargs) -> MobileNetV2:
    return _mobilenetv2(1.4, None, **kwargs)


@register_model
def mobilenetv2_100_stra(stra: StRAConfig, **kwargs) -> MobileNetV2:
    return _mobilenetv2(1.0, stra, **kwargs)


@register_model
def mobilenetv2_140_stra(stra: StRAConfig, **kwargs) -> MobileNetV2:
    return _mobilenetv2(1.4, stra, **kwargs)
