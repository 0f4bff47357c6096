"""Structure-Regularized Attention (StRA): local attention (eq. 2) + mode attention (eqs. 1, 3).

Where this follows the authors' design and where it departs (see ../shared/stra-design.md):

* Local attention follows the authors' "mask branch": grouped 1x1 conv C -> C/r, BN, tanh,
  grouped 1x1 conv -> G*(1+K*K), BN. Departures:
  - the 1+K*K logits of each group are taken from that group's own output channels (the
    grouped conv produces them contiguously), not "first G channels = nu", so every group's
    attention is computed only from its own subspace;
  - the mask branch runs at input resolution and omega is subsampled at the output pixels,
    because nu(x_j) must exist for every neighbour j of a strided output pixel;
  - neighbours outside the image are masked out of the softmax, so the weights of every
    output pixel sum to 1 over its real neighbourhood N_K(i) (eq. 2) instead of leaking mass
    to zero padding.
* Mode attention has no parameters, as in eqs. 1 and 3. Inner products are scaled by
  1/sqrt(d) (d = channels per mode), which the design note allows, to keep sigmoid/softmax
  out of saturation at initialisation.
* The diversity regulariser (its exact form is not public) is the mean squared off-diagonal
  entry of the normalised Gram matrix of the modal vectors Z, per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Gating = Literal["sigmoid", "softmax"]
ModalVector = Literal["mean", "centroid"]

# Additive logit for out-of-image neighbours: large enough to zero them after softmax, small
# enough to stay finite in fp16 (max 65504).
_MASKED_LOGIT = -1.0e4


@dataclass(frozen=True)
class StRAConfig:
    """Hyper-parameters of one StRA block (defaults: the authors' ResNet50 setting)."""

    groups: int = 8  # G: modes = attention heads = channel groups
    kernel_size: int = 3  # K: local neighbourhood is K x K
    reduction: int = 4  # r: mask-branch bottleneck C -> C/r
    mode_attention: bool = True  # False gives the local-only variant of Fig. 3(a)
    gating: Gating = "sigmoid"  # sigma in r_ig: modes independent (sigmoid) or exclusive (softmax)
    modal_vector: ModalVector = "mean"  # xi_g in eq. 1
    mode_interaction: bool = True  # rho: z'_g = sum_j softmax_j(<z_g, z_j>) z_j

    def with_overrides(self, **overrides) -> StRAConfig:
        return replace(self, **overrides)


def neighbourhood(x: torch.Tensor, kernel_size: int, stride: int = 1) -> torch.Tensor:
    """K x K neighbourhoods with zero 'same' padding: (B, C, H, W) -> (B, C, K*K, H', W').

    Built from strided slices instead of F.unfold so that it exports to every ONNX opset and
    keeps the spatial layout. Position k = dy * K + dx, row-major like a conv kernel.
    """
    pad = kernel_size // 2
    height, width = x.shape[-2:]
    out_h = (height - 1) // stride + 1
    out_w = (width - 1) // stride + 1
    padded = F.pad(x, (pad, pad, pad, pad))
    shifted = [
        padded[..., dy : dy + (out_h - 1) * stride + 1 : stride, dx : dx + (out_w - 1) * stride + 1 : stride]
        for dy in range(kernel_size)
        for dx in range(kernel_size)
    ]
    return torch.stack(shifted, dim=2)


class LocalAttention(nn.Module):
    """Eq. 2: s_i = sum_{j in N_K(i)} a_ij u(x_j), a_ij = softmax_j(omega(x_i)_j + nu(x_j)), per group."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, config: StRAConfig = StRAConfig()):
        super().__init__()
        groups, k = config.groups, config.kernel_size
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in ({in_channels}) and out ({out_channels}) channels must divide by G={groups}")
        # C/r rounded to a multiple of G, since the mask branch is grouped.
        hidden = max(groups, round(in_channels / config.reduction / groups) * groups)
        self.groups, self.kernel_size, self.stride = groups, k, stride
        self.mask_branch = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, groups=groups, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Tanh(),
            nn.Conv2d(hidden, groups * (1 + k * k), 1, groups=groups, bias=False),
            nn.BatchNorm2d(groups * (1 + k * k)),
        )
        self.value = nn.Conv2d(in_channels, out_channels, 1, groups=groups, bias=False)
        # Identity taps: forward hooks on them read the attention weights without changing
        # the graph (used by the attention-map plots).
        self.weights_tap = nn.Identity()

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """a_ij for every group and output pixel: (B, G, K*K, H', W'), summing to 1 over K*K."""
        batch, _, height, width = x.shape
        kk = self.kernel_size**2
        logits = self.mask_branch(x).reshape(batch, self.groups, 1 + kk, height, width)
        nu, omega = logits[:, :, 0], logits[:, :, 1:]
        omega = omega[..., :: self.stride, :: self.stride]
        nu_j = neighbourhood(nu, self.kernel_size, self.stride)  # (B, G, K*K, H', W')
        inside = neighbourhood(torch.ones_like(nu[:, :1]), self.kernel_size, self.stride)
        scores = omega + nu_j + (1.0 - inside) * _MASKED_LOGIT
        return self.weights_tap(scores.softmax(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.attention_weights(x)
        batch, groups, kk, out_h, out_w = weights.shape
        values = neighbourhood(self.value(x), self.kernel_size, self.stride)
        values = values.reshape(batch, groups, -1, kk, out_h, out_w)
        # Contraction over the K*K neighbours as an einsum (a batched matmul), which also lets
        # FLOP counters see the multiply-adds.
        out = torch.einsum("bgckhw,bgkhw->bgchw", values, weights)
        return out.reshape(batch, -1, out_h, out_w)


class ModeAttention(nn.Module):
    """Eqs. 1 and 3 on the local-attention output S; returns S + Y (Y = union over modes of r_ig z'_g)."""

    def __init__(self, channels: int, config: StRAConfig = StRAConfig()):
        super().__init__()
        if channels % config.groups:
            raise ValueError(f"channels ({channels}) must divide by G={config.groups}")
        self.groups = config.groups
        self.gating = config.gating
        self.modal_vector = config.modal_vector
        self.mode_interaction = config.mode_interaction
        self.scale = 1.0 / math.sqrt(channels // config.groups)
        self.coefficients_tap = nn.Identity()  # hook point for r_ig maps (Fig. 3b / Fig. 4)
        self.diversity: torch.Tensor | None = None  # per-sample regulariser of the last forward
        self.coefficients: torch.Tensor | None = None  # r_ig maps (B, G, H, W) of the last forward

    def modal_vectors(self, s: torch.Tensor) -> torch.Tensor:
        """z_g from S_g (B, G, d, N): the mean over pixels, or a centroid of the representative pixels."""
        mean = s.mean(dim=-1)
        if self.modal_vector == "mean":
            return mean
        # Centroid: one soft-assignment step from the mean, so pixels that agree with the mode
        # dominate and background pixels stop dragging z_g towards the global average.
        affinity = torch.einsum("bgdn,bgd->bgn", s, mean) * self.scale
        return torch.einsum("bgdn,bgn->bgd", s, affinity.softmax(dim=-1))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = s.shape
        s_g = s.reshape(batch, self.groups, channels // self.groups, height * width)
        z = self.modal_vectors(s_g)  # (B, G, d)
        self.diversity = mode_diversity(z)
        if self.mode_interaction:
            interaction = torch.einsum("bgd,bhd->bgh", z, z) * self.scale
            z = torch.einsum("bgh,bhd->bgd", interaction.softmax(dim=-1), z)
        logits = torch.einsum("bgdn,bgd->bgn", s_g, z) * self.scale
        coefficients = logits.sigmoid() if self.gating == "sigmoid" else logits.softmax(dim=1)
        coefficients = self.coefficients_tap(coefficients.reshape(batch, self.groups, height, width))
        self.coefficients = coefficients
        y = coefficients.reshape(batch, self.groups, 1, height * width) * z.unsqueeze(-1)
        return s + y.reshape(batch, channels, height, width)


def mode_diversity(z: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal of the normalised Gram matrix of the modal vectors, per sample.

    0 when the G modes are mutually orthogonal, 1 when they all point the same way.
    """
    groups = z.shape[1]
    unit = F.normalize(z, dim=-1)
    gram = torch.einsum("bgd,bhd->bgh", unit, unit)
    off_diagonal = gram - torch.eye(groups, device=z.device, dtype=z.dtype)
    return off_diagonal.pow(2).sum(dim=(1, 2)) / (groups * (groups - 1))


class StRA(nn.Module):
    """Drop-in replacement for a K x K conv: local attention, then (optionally) mode attention."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, config: StRAConfig = StRAConfig()):
        super().__init__()
        self.config = config
        self.local = LocalAttention(in_channels, out_channels, stride, config)
        self.mode = ModeAttention(out_channels, config) if config.mode_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.local(x)
        return s if self.mode is None else self.mode(s)


def last_mode_attention(model: nn.Module) -> ModeAttention:
    blocks = [m for m in model.modules() if isinstance(m, ModeAttention)]
    if not blocks:
        raise ValueError("the model has no mode attention (not an StRA model, or mode_attention=False)")
    return blocks[-1]


class WithModes(nn.Module):
    """`model` with a second output, `modes`: the r_ig maps (B, G, H, W) of its last mode-attention block.

    The maps are computed by the forward pass anyway, so exporting them as a graph output costs
    nothing (ONNX Runtime skips copying an output nobody asks for).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        block = last_mode_attention(model)
        self._block_name = next(name for name, m in model.named_modules() if m is block)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(x)
        return output, self.model.get_submodule(self._block_name).coefficients


def diversity_loss(model: nn.Module) -> torch.Tensor:
    """Sum over the model's mode-attention blocks of the batch-mean diversity of the last forward.

    Zero (a tensor) for models without mode attention, so a training loop can always add
    `weight * diversity_loss(model)`.
    """
    terms = [m.diversity.mean() for m in model.modules() if isinstance(m, ModeAttention) and m.diversity is not None]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
