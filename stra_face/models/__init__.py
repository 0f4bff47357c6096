"""StRA-Face networks: the StRA block, ResNet50 / MobileNetV2 backbones and baselines, one registry.

The names below load their submodule (and torch) on first use (PEP 562), so that a torch-free
submodule such as the `stra-face flops` command line imports at once.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULE = {
    "ClassifierHead": "heads",
    "EmbeddingHead": "heads",
    "Network": "heads",
    "create_model": "registry",
    "list_models": "registry",
    "register_fixed_model": "registry",
    "register_model": "registry",
    "LocalAttention": "stra",
    "ModeAttention": "stra",
    "StRA": "stra",
    "StRAConfig": "stra",
    "WithModes": "stra",
    "diversity_loss": "stra",
    "last_mode_attention": "stra",
    "mode_diversity": "stra",
    "neighbourhood": "stra",
}
__all__ = sorted(_SUBMODULE)  # noqa: PLE0605 (the names above, one list to keep)


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_SUBMODULE[name]}", __name__), name)
