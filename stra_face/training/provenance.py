"""Where a trained or exported model came from: the code revision and the hardware, for model cards."""

from __future__ import annotations

import platform
import subprocess


def code_revision() -> str:
    """The checkout's short commit, marked when tracked files have uncommitted changes."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return revision + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return (
        f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads "
        f"(torch {torch.__version__})"
    )
