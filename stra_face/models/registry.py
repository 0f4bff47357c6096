"""Model registry: `create_model("resnet50_stra", num_classes=7, in_chans=1, ...)`, timm-style."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from torch import nn

from .dlib_resnet import DlibFaceResNet, load_dlib_resnet
from .heads import Network
from .mobilenetv2 import MobileNetV2, MobileNetV2Config
from .resnet import ResNet, ResNetConfig
from .stra import StRAConfig

BackboneBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, BackboneBuilder] = {}
# Complete networks with their own fixed head and input size (ported models): built as they are.
_FIXED: dict[str, Callable[..., nn.Module]] = {}

_HEAD_ARGS = ("num_classes", "embedding_dim", "dropout", "embedding_pool", "input_size", "resize_input")


def register_model(fn: BackboneBuilder) -> BackboneBuilder:
    _REGISTRY[fn.__name__] = fn
    return fn


def register_fixed_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _FIXED[fn.__name__] = fn
    return fn


def list_models(fixed: bool = False) -> list[str]:
    """Backbones (heads and input size free); fixed=True adds the complete ported networks."""
    return sorted(_REGISTRY) + (sorted(_FIXED) if fixed else [])


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered backbone with heads.

    Head arguments: num_classes, embedding_dim, dropout, embedding_pool ("avg"/"flatten"),
    input_size. Backbone arguments: in_chans, stem_stride, last_stride, and for the StRA
    variants `stra=StRAConfig(...)` or any StRAConfig field directly (groups=4,
    mode_attention=False, gating="softmax", ...).
    Fixed networks (`list_models(fixed=True)`) take only their own arguments, e.g. pretrained=True.
    """
    if name in _FIXED:
        return _FIXED[name](**kwargs)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(list_models(fixed=True))}")
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


@register_fixed_model
def dlib_resnet_v1(
    pretrained: bool = False, num_classes: int = 0, embedding_dim: int = 0, in_chans: int = 3
) -> DlibFaceResNet:
    """dlib's face descriptor ResNet: (N, 3, 150, 150) RGB 0..255 -> (N, 128); pretrained: dlib's
    CC0 weights read from the installed face_recognition_models package (the `teacher` extra)."""
    if num_classes or embedding_dim not in (0, 128) or in_chans != 3:
        raise ValueError("dlib_resnet_v1 has a fixed 128-d head on RGB input")
    return load_dlib_resnet() if pretrained else DlibFaceResNet()
