"""FER2013 training throughput: the device-resident path against the DataLoader path, side by side.

    python benchmarks/fer_train_speed.py                                # whatever device is there
    python benchmarks/fer_train_speed.py --steps 100 --batch-size 256 --compile
    python benchmarks/fer_train_speed.py --device cpu --steps 3 --batch-size 16 --workers 1

Times `--steps` optimiser steps (after `--warmup` untimed ones: cuDNN autotuning, torch.compile,
loader start) of the GPU recipe (stra_face/training/configs/fer_gpu_stra.toml: 48x48, stem_stride 2,
last_stride 1, AdamW, bf16 autocast and channels_last on a GPU) through
`stra_face.training.engine.train_one_epoch`, the loop `stra_face.training.fer.trainer train` runs, \
for each model and path:

- device: the split on the device as uint8, augmented there in batch (fer_data.ResidentLoader);
- loader: DataLoader workers decoding + albumentations (fer_data.FerDataset), batches copied over.

The target it reports against: a 60-epoch schedule of the 28,709 training images in 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stra_face.training import engine  # noqa: E402
from stra_face.training.fer.data import FerData, load_fer2013  # noqa: E402
from stra_face.training.fer.trainer import FerConfig, build_model, make_train_loader  # noqa: E402

TRAIN_IMAGES, TARGET_EPOCHS, TARGET_SECONDS = 28_709, 60, 300


def rate(images_per_second: float) -> str:
    return f"{images_per_second:,.0f}" if images_per_second >= 100 else f"{images_per_second:.2f}"


def training_gflops_per_image(model: nn.Module, device: torch.device) -> float:
    """Forward + backward FLOPs per 48x48 image (torch's FLOP counter; backward ~ 2x forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    images = torch.zeros(2, 1, 48, 48, device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        model(images).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2 / 1e9


def measure(config: FerConfig, train_data: FerData, runtime: engine.Runtime, steps: int, warmup: int) -> float:
    """Images per second over `steps` training steps (one train_one_epoch call, timed to the last step)."""
    engine.seed_everything(0)
    channels_last = config.channels_last and runtime.device.type == "cuda"
    model = build_model(config).to(
        runtime.device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    optimizer = engine.build_optimizer(
        [model], config.optimizer, config.lr * config.batch_size / 64, config.weight_decay
    )
    scheduler = engine.warmup_cosine(optimizer, 10 * (steps + warmup), 1)
    network = torch.compile(model) if config.compile else model
    loader = make_train_loader(config, train_data, runtime)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def step(net: nn.Module, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
        images, labels = batch
        logits = net(images)
        return criterion(logits.float(), labels), (logits.argmax(1) == labels).sum(), len(labels)

    options = dict(
        amp=config.amp,
        diversity_weight=config.diversity_weight,
        grad_clip=config.grad_clip,
        channels_last=channels_last,
        log_every=10**9,
    )
    if warmup:
        engine.train_one_epoch(
            network, loader, step, optimizer, scheduler, runtime, epoch=0, max_steps=warmup, **options
        )
    stats = engine.train_one_epoch(
        network, loader, step, optimizer, scheduler, runtime, epoch=1, max_steps=steps, **options
    )
    del loader  # stops loader workers before the next measurement
    return stats.images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("stra_face/training/configs/fer_gpu_stra.toml"))
    parser.add_argument("--data", default="../shared/data/fer2013/fer2013_jpg.npz")
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet50_stra"])
    parser.add_argument("--paths", nargs="+", default=["device", "loader"], choices=["device", "loader"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, help="default: the config's")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="loader path workers")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (both paths)")
    args = parser.parse_args()

    runtime = engine.setup_runtime(args.device)
    overrides = [
        "--config",
        str(args.config),
        "--device",
        args.device,
        "--workers",
        str(args.workers),
        "--compile",
        str(args.compile),
    ]
    if args.batch_size:
        overrides += ["--batch-size", str(args.batch_size)]
    train_data = load_fer2013(args.data).split("Training")
    if runtime.device.type == "cuda":
        name = (
            f"{torch.cuda.get_device_name()} (bf16 autocast, channels_last{', torch.compile' if args.compile else ''})"
        )
    else:
        name = f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible (fp32)"
    base = engine.parse_config(FerConfig, overrides, "")
    print(
        f"device: {name}; batch {base.batch_size}, {args.steps} timed steps after {args.warmup}; "
        f"loader path: {args.workers} workers"
    )
    target = TARGET_EPOCHS * TRAIN_IMAGES / TARGET_SECONDS
    rows = []
    for model_name in args.models:
        config = engine.parse_config(FerConfig, [*overrides, "--model", model_name], "")
        gflops = training_gflops_per_image(build_model(config).to(runtime.device), runtime.device)
        speeds = {
            path: measure(
                engine.parse_config(FerConfig, [*overrides, "--model", model_name, "--augment-on", path], ""),
                train_data,
                runtime,
                args.steps,
                args.warmup,
            )
            for path in args.paths
        }
        rows.append((model_name, gflops, speeds))
        print(
            f"  {model_name}: " + ", ".join(f"{path} {rate(speed)} img/s" for path, speed in speeds.items()), flush=True
        )

    header = (
        f"{'model':<16} {'GFLOP/img':>9} "
        + " ".join(f"{path + ' img/s':>13}" for path in args.paths)
        + " "
        + " ".join(f"{'60 ep, ' + path:>16}" for path in args.paths)
    )
    print("\n" + header)
    for model_name, gflops, speeds in rows:
        minutes = " ".join(f"{TARGET_EPOCHS * TRAIN_IMAGES / speeds[path] / 60:>12.1f} min" for path in args.paths)
        print(
            f"{model_name:<16} {gflops:>9.2f} "
            + " ".join(f"{rate(speeds[path]):>13}" for path in args.paths)
            + " "
            + minutes
        )
    print(
        f"\ntarget: {TARGET_EPOCHS} epochs x {TRAIN_IMAGES:,} images in {TARGET_SECONDS} s = {target:,.0f} img/s "
        f"(training FLOPs at that rate: "
        + ", ".join(f"{name} {g * target / 1e3:.1f} TFLOP/s" for name, g, _ in rows)
        + ")"
    )


if __name__ == "__main__":
    main()
