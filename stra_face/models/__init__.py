"""StRA-Face networks: the StRA block, ResNet50 / MobileNetV2 backbones and baselines, one registry."""
from .heads import ClassifierHead, EmbeddingHead, Network
from .registry import create_model, list_models, register_fixed_model, register_model
from .stra import (
    LocalAttention,
    ModeAttention,
    StRA,
    StRAConfig,
    WithModes,
    diversity_loss,
    last_mode_attention,
    mode_diversity,
    neighbourhood,
)

__all__ = [
    "ClassifierHead",
    "EmbeddingHead",
    "LocalAttention",
    "ModeAttention",
    "Network",
    "StRA",
    "StRAConfig",
    "WithModes",
    "create_model",
    "diversity_loss",
    "last_mode_attention",
    "list_models",
    "mode_diversity",
    "neighbourhood",
    "register_fixed_model",
    "register_model",
]
