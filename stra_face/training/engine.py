"""The training machinery shared by the FER and face trainers.

One process per device, launched by `torchrun` for multi-GPU / multi-node runs (DDP: NCCL on
GPUs, gloo on CPUs) or run directly as a single process. Provides: dataclass configs read from
TOML + command-line overrides, seeding, optimiser and warmup-cosine schedule, mixed precision,
an epoch loop with progress bars, atomic checkpoints with resume, and a CSV log.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from stra_face import models
from stra_face.training.config import parse_config  # noqa: F401 (callers use engine.parse_config)

# --------------------------------------------------------------------------- configs


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: rank/world size from torchrun's environment, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str = "auto") -> Runtime:
    """Joins the torchrun process group when launched by torchrun; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    torch_device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(torch_device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(rank, world_size, local_rank, torch_device)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Different but reproducible streams per rank (augmentations must differ across ranks)."""
    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def worker_seed(worker_id: int) -> None:
    """DataLoader workers: numpy/random seeded from torch's per-worker seed (albumentations uses both)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset, batch_size: int, runtime: Runtime, *, train: bool, workers: int, seed: int
) -> DataLoader:
    """Per-rank loader; with DDP each rank sees its own shard (DistributedSampler)."""
    sampler = None
    if runtime.distributed:
        sampler = DistributedSampler(
            dataset, runtime.world_size, runtime.rank, shuffle=train, seed=seed, drop_last=train
        )
    generator = torch.Generator().manual_seed(seed + runtime.rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=worker_seed,
        generator=generator,
    )


def all_reduce_mean(value: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        value = value.clone()
        dist.all_reduce(value)
        value /= runtime.world_size
    return value


def wrap_ddp(model: nn.Module, runtime: Runtime) -> nn.Module:
    if not runtime.distributed:
        return model
    model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if runtime.device.type == "cuda" else model
    device_ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


# --------------------------------------------------------------------------- optimisation


def build_optimizer(
    named_modules: Iterable[nn.Module], name: str, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; no weight decay on norms and biases (they only rescale)."""
    decay, no_decay = [], []
    for module in named_modules:
        for param_name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or param_name.endswith(".bias") else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    if name == "adamw":
        # One fused kernel for all parameters instead of a loop per tensor (CUDA and CPU alike; on two
        # CPU cores the per-tensor loop was 17% of a MobileNetV2 student's step).
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    raise ValueError(f"unknown optimizer {name!r} (sgd, adamw)")


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, final_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup then cosine decay to final_ratio * lr, stepped per iteration."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def autocast(runtime: Runtime, enabled: bool):
    """bf16 autocast on GPUs (no loss scaling needed); a no-op on CPU where it would only slow down."""
    return torch.autocast(runtime.device.type, dtype=torch.bfloat16, enabled=enabled and runtime.device.type == "cuda")


# --------------------------------------------------------------------------- bookkeeping


class Checkpointer:
    """`last.pt` after every epoch (atomic rename, so a killed run never leaves half a file), `best.pt` on
    improvement."""

    def __init__(self, directory: Path, runtime: Runtime):
        self.directory = directory
        self.runtime = runtime
        if runtime.is_main:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def last(self) -> Path:
        return self.directory / "last.pt"

    @property
    def best(self) -> Path:
        return self.directory / "best.pt"

    def save(self, state: dict, is_best: bool) -> None:
        if not self.runtime.is_main:
            return
        tmp = self.directory / ".last.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.last)
        if is_best:
            tmp = self.directory / ".best.pt.tmp"
            torch.save(state, tmp)
            os.replace(tmp, self.best)

    def load_last(self) -> dict | None:
        return torch.load(self.last, map_location="cpu", weights_only=False) if self.last.exists() else None


class CSVLog:
    """One row per epoch; appends across resumes."""

    def __init__(self, path: Path, runtime: Runtime):
        self.path = path
        self.enabled = runtime.is_main

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def save_config(config: Any, path: Path) -> None:
    path.write_text(json.dumps(dataclasses.asdict(config), indent=2, default=str))


@dataclass
class EpochStats:
    loss: float
    diversity: float
    accuracy: float
    images_per_second: float


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    step_fn: Callable[[nn.Module, tuple], tuple[torch.Tensor, torch.Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    runtime: Runtime,
    *,
    epoch: int,
    amp: bool,
    diversity_weight: float,
    grad_clip: float,
    max_steps: int = 0,
    channels_last: bool = False,
    log_every: int = 20,
) -> EpochStats:
    """One pass over the loader (a DataLoader or any iterable of batches with len(), e.g. a
    fer_data.ResidentLoader). `step_fn(model, batch)` returns (task loss, #correct, #samples).

    Running sums stay on the device and are read back every `log_every` steps only: a `.item()`
    per step would make the host wait for the GPU each step.
    """
    model.train()
    for owner in (loader, getattr(loader, "sampler", None)):
        if hasattr(owner, "set_epoch"):  # DistributedSampler, ResidentLoader
            owner.set_epoch(epoch)
    totals = torch.zeros(4, dtype=torch.float64, device=runtime.device)  # loss*n, diversity*n, correct, n
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not runtime.is_main, leave=False, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        batch = tuple(item.to(runtime.device, non_blocking=True) if torch.is_tensor(item) else item for item in batch)
        if channels_last:
            batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        with autocast(runtime, amp):
            loss, correct, count = step_fn(model, batch)
            diversity = models.diversity_loss(unwrap(model))
            total = loss + diversity_weight * diversity if diversity_weight else loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        totals += torch.stack(
            [
                loss.detach().double() * count,
                diversity.detach().double().to(totals.device) * count,
                correct.double(),
                totals.new_tensor(count),
            ]
        )
        if step % log_every == 0:
            host = totals.cpu()
            bar.set_postfix(
                loss=f"{host[0] / host[3]:.3f}", acc=f"{host[2] / host[3]:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}"
            )
    if runtime.distributed:
        dist.all_reduce(totals)
    totals = totals.cpu()  # waits for the last step, so the timing below is the real one
    seconds = time.perf_counter() - start
    n = max(1.0, float(totals[3]))
    return EpochStats(float(totals[0]) / n, float(totals[1]) / n, float(totals[2]) / n, n / seconds)
