"""Network heads and the wrapper that joins a backbone to them."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

EmbeddingPool = Literal["avg", "flatten"]


class EmbeddingHead(nn.Module):
    """BN - dropout - FC - BN to a D-d embedding (insightface's "E" output).

    pool="avg" works at any input size; pool="flatten" keeps the spatial layout of the last
    map (as arcface_torch's IResNet does for 112x112 faces) and needs that map's size.
    """

    def __init__(
        self,
        in_channels: int,
        embedding_dim: int,
        dropout: float = 0.0,
        pool: EmbeddingPool = "avg",
        feature_size: tuple[int, int] = (1, 1),
    ):
        super().__init__()
        in_features = in_channels if pool == "avg" else in_channels * feature_size[0] * feature_size[1]
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.Identity()
        self.bn_in = nn.BatchNorm2d(in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, embedding_dim)
        self.bn_out = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.bn_in(self.pool(x)).flatten(1))
        return self.bn_out(self.fc(x))


class ClassifierHead(nn.Module):
    """Dropout - linear on pooled features or embeddings."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))


class Network(nn.Module):
    """backbone -> [embedding head] -> [classifier head].

    With neither head the output is the pooled backbone feature (B, num_features); with an
    embedding head it is the (unnormalised) embedding; with a classifier it is the logits.
    Margin heads for face recognition live in stra_face/training/, apart from the network.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 0,
        embedding_dim: int = 0,
        dropout: float = 0.0,
        embedding_pool: EmbeddingPool = "avg",
        input_size: tuple[int, int] | None = None,
        resize_input: int = 0,
    ):
        super().__init__()
        # A network trained at a smaller side than the aligned crop it is fed (e.g. 80 px from the 112
        # crop, for CPU budgets) resizes inside the graph, so the service and the exported file need no
        # new input kind.
        self.resize_input = resize_input
        self.backbone = backbone
        features = backbone.num_features
        self.embedding = None
        if embedding_dim:
            feature_size = (1, 1)
            if embedding_pool == "flatten":
                if input_size is None:
                    raise ValueError("embedding_pool='flatten' needs input_size=(H, W)")
                with torch.no_grad():
                    backbone.eval()
                    feature_size = tuple(backbone(torch.zeros(1, backbone.config.in_chans, *input_size)).shape[-2:])
                    backbone.train()
            self.embedding = EmbeddingHead(features, embedding_dim, dropout, embedding_pool, feature_size)
            features = embedding_dim
        self.classifier = (
            ClassifierHead(features, num_classes, dropout if not embedding_dim else 0.0) if num_classes else None
        )
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_input:
            x = F.interpolate(x, size=(self.resize_input, self.resize_input), mode="bilinear", align_corners=False)
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        x = self.embedding(features) if self.embedding is not None else features.mean(dim=(2, 3))
        return self.classifier(x) if self.classifier is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
