"""Margin softmax heads, kept apart from the backbone (as in insightface's arcface_torch).

Each head maps (embeddings, labels) to logits for cross-entropy; at test time only the
backbone's embedding is used. Samples labelled -1 (distillation-only faces) get no margin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MarginHead(nn.Module):
    def __init__(self, embedding_dim: int, num_classes: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = scale

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float())).clamp(-1, 1)

    def margin(self, target_cosine: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = self.cosine(embeddings)
        labelled = labels >= 0
        rows = torch.nonzero(labelled).squeeze(1)
        if rows.numel():
            target = cosine[rows, labels[rows]]
            cosine = cosine.index_put((rows, labels[rows]), self.margin(target))
        return cosine * self.scale


class CosFace(MarginHead):
    """cos(theta) - m for the true class (Wang et al. 2018)."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35):
        super().__init__(embedding_dim, num_classes, scale)
        self.m = margin

    def margin(self, target_cosine: torch.Tensor) -> torch.Tensor:
        return target_cosine - self.m


class ArcFace(MarginHead):
    """cos(theta + m) for the true class (Deng et al. 2019); past theta + m > pi the penalty
    continues linearly (cos(theta) - m sin(m) m) so the logit stays monotonic in theta."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.5):
        super().__init__(embedding_dim, num_classes, scale)
        self.m = margin
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def margin(self, target_cosine: torch.Tensor) -> torch.Tensor:
        sine = torch.sqrt((1 - target_cosine**2).clamp(min=1e-7))
        with_margin = target_cosine * math.cos(self.m) - sine * math.sin(self.m)
        return torch.where(target_cosine > self.threshold, with_margin, target_cosine - self.fallback)


class Softmax(nn.Module):
    """Plain softmax over a linear classifier: the paper's face-recognition setting."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings.float())


def create_margin_head(name: str, embedding_dim: int, num_classes: int, scale: float, margin: float) -> nn.Module:
    if name == "arcface":
        return ArcFace(embedding_dim, num_classes, scale, margin)
    if name == "cosface":
        return CosFace(embedding_dim, num_classes, scale, margin)
    if name == "softmax":
        return Softmax(embedding_dim, num_classes)
    raise ValueError(f"unknown margin head {name!r} (arcface, cosface, softmax)")


def similarity_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Pairwise-similarity matching: the student's cosine-similarity matrix over the batch should
    equal the teacher's (dimensions may differ: 512-d student, 128-d teacher). Rows without a
    teacher vector (NaN) are left out. Mean squared error over off-diagonal pairs."""
    has_teacher = ~torch.isnan(teacher).any(dim=1)
    if has_teacher.sum() < 2:
        return student.new_zeros(())
    s = F.normalize(student[has_teacher].float())
    t = F.normalize(teacher[has_teacher].float())
    off_diagonal = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return ((s @ s.T - t @ t.T)[off_diagonal] ** 2).mean()
