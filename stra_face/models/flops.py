"""Parameters and multiply-accumulates of every registered model: the paper's complexity table.

    stra-face flops                    # the three input settings, every model
    stra-face flops --models resnet50 resnet50_stra --sizes 256x128

MACs are counted as the paper counts FLOPs: multiply-adds of convolutions, linear layers and
matrix products (attention included); normalisation, activations and additions are left out.
The counter is PyTorch's own `torch.utils.flop_counter.FlopCounterMode` (2 FLOPs = 1 MAC).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .registry import create_model

# The paper's Table 1 (Market1501 setting: 256x128 input, last_stride=1), in GMACs.
PAPER_GMACS_256x128 = {"resnet50": 4.05, "resnet50_stra": 3.17}


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int


def count_complexity(model: torch.nn.Module, input_size: tuple[int, int], in_chans: int = 3) -> Complexity:
    """Parameters and MACs of one forward pass of a single image."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_chans, *input_size))
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params=params, macs=counter.get_total_flops() // 2)


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width or height)


def complexity_table(names: list[str], sizes: list[str], last_stride: int) -> list[dict]:
    """One row per model: backbone parameters (no classifier) and GMACs at each size."""
    rows = []
    for name in names:
        model = create_model(name, last_stride=last_stride)
        row = {"model": name}
        for size in sizes:
            result = count_complexity(model, parse_size(size))
            row["params_m"] = result.params / 1e6
            row[size] = result.macs / 1e9
        rows.append(row)
    return rows


def format_table(rows: list[dict], sizes: list[str]) -> str:
    paper_col = "256x128" in sizes
    header = f"{'model':<22}{'params (M)':>12}" + "".join(f"{s + ' GMACs':>16}" for s in sizes)
    header += f"{'paper 256x128':>15}{'diff':>8}" if paper_col else ""
    lines = [header, "-" * len(header)]
    for row in rows:
        line = f"{row['model']:<22}{row['params_m']:>12.2f}" + "".join(f"{row[s]:>16.3f}" for s in sizes)
        paper = PAPER_GMACS_256x128.get(row["model"])
        if paper_col and paper is not None:
            line += f"{paper:>15.2f}{(row['256x128'] - paper) / paper:>+8.1%}"
        lines.append(line)
    return "\n".join(lines)
