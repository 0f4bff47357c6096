"""Attention layers of the paper's comparison baselines: SE, non-local, stand-alone local self-attention."""

from __future__ import annotations

import math

import torch
from torch import nn

from .stra import _MASKED_LOGIT, neighbourhood


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al.): channel gates from globally pooled features."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class NonLocal(nn.Module):
    """Non-local block, embedded-Gaussian form (Wang et al.), residual with a zero-initialised BN."""

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inner = channels // reduction
        self.theta = nn.Conv2d(channels, inner, 1)
        self.phi = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, inner, 1)
        self.out = nn.Sequential(nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.out[1].weight)  # starts as identity, as in the paper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        theta = self.theta(x).flatten(2)  # (B, C', N)
        phi = self.phi(x).flatten(2)
        g = self.g(x).flatten(2)
        affinity = torch.einsum("bci,bcj->bij", theta, phi).softmax(dim=-1)
        y = torch.einsum("bij,bcj->bci", affinity, g).reshape(batch, -1, height, width)
        return x + self.out(y)


class LocalSelfAttention(nn.Module):
    """Stand-alone local self-attention (Ramachandran et al., "SASA") as a K x K conv replacement.

    Per head: a_ij = softmax_j(q_i . (k_j + r_{j-i})) over the K x K window, with the relative
    embedding r split into a row half and a column half, as in the SASA paper.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, heads: int = 8, kernel_size: int = 7):
        super().__init__()
        if out_channels % (2 * heads):
            raise ValueError(f"out_channels ({out_channels}) must divide by 2*heads ({2 * heads})")
        self.heads, self.kernel_size, self.stride = heads, kernel_size, stride
        head_dim = out_channels // heads
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.rel_rows = nn.Parameter(torch.randn(head_dim // 2, kernel_size) / math.sqrt(head_dim))
        self.rel_cols = nn.Parameter(torch.randn(head_dim // 2, kernel_size) / math.sqrt(head_dim))
        self.scale = 1.0 / math.sqrt(head_dim)

    def relative_embedding(self) -> torch.Tensor:
        """(d, K*K): row embedding in the first half of the channels, column in the second."""
        k = self.kernel_size
        rows = self.rel_rows.unsqueeze(-1).expand(-1, k, k)
        cols = self.rel_cols.unsqueeze(-2).expand(-1, k, k)
        return torch.cat([rows, cols], dim=0).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        k, s, heads = self.kernel_size, self.stride, self.heads
        q = self.query(x)[..., ::s, ::s]
        out_h, out_w = q.shape[-2:]
        q = q.reshape(batch, heads, -1, out_h, out_w)
        keys = neighbourhood(self.key(x), k, s).reshape(batch, heads, -1, k * k, out_h, out_w)
        values = neighbourhood(self.value(x), k, s).reshape(batch, heads, -1, k * k, out_h, out_w)
        keys = keys + self.relative_embedding()[None, None, :, :, None, None]
        logits = torch.einsum("bgchw,bgckhw->bgkhw", q, keys) * self.scale
        inside = neighbourhood(torch.ones_like(x[:, :1]), k, s)  # (B, 1, K*K, H', W')
        weights = (logits + (1.0 - inside) * _MASKED_LOGIT).softmax(dim=2)
        out = torch.einsum("bgckhw,bgkhw->bgchw", values, weights)
        return out.reshape(batch, -1, out_h, out_w)
