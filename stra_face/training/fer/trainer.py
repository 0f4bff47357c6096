"""FER2013 expression classifier: train, evaluate, ship.

    python -m stra_face.training.fer train --config stra_face/training/configs/fer_resnet50_stra.toml
    torchrun --nproc_per_node 2 -m stra_face.training.fer train --config ...        # DDP, same script
    python -m stra_face.training.fer eval --checkpoint runs/fer/resnet50_stra/best.pt --data ... --tta flip
    python -m stra_face.training.fer eval --onnx stra_face/assets/models/expression.onnx --data ...
    python -m stra_face.training.fer ship --checkpoint runs/fer/resnet50_stra/best.pt --out stra_face/assets/models/expression.onnx
    python -m stra_face.training.fer gpu-run --out runs/fer/gpu    # StRA + baseline, evaluated, StRA shipped (stra_face/training/fer/gpu_run.py)

Protocol: train on Training, pick the checkpoint on PublicTest, report PrivateTest once.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stra_face import models
from stra_face.models.stra import ModeAttention, WithModes
from stra_face.vision.preprocess import EXPRESSION_SIZE, EXPRESSIONS
from stra_face.training import engine
from stra_face.training.fer.data import SPLITS, FerData, FerDataset, ResidentLoader, fer_train_augmentation, load_fer2013, tta_views

DEFAULT_DATA = "../shared/data/fer2013/fer2013_jpg.npz"


@dataclass
class FerConfig:
    data: str = DEFAULT_DATA
    out: str = "runs/fer/resnet50_stra"
    model: str = "resnet50_stra"
    # For 48x48 inputs: a 3x3 stride-1 stem with max-pool (stem_stride=2) and last_stride=1 keep
    # layer4 -- where StRA lives -- at 6x6 instead of the 2x2 an ImageNet stem would leave.
    model_kwargs: dict = field(default_factory=lambda: {"stem_stride": 2, "last_stride": 1})
    dropout: float = 0.2
    epochs: int = 40
    batch_size: int = 64  # per process
    optimizer: str = "sgd"
    lr: float = 0.05  # for the global batch (batch_size x world size) of 64; scaled linearly
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    diversity_weight: float = 0.0
    grad_clip: float = 0.0
    amp: bool = True  # bf16 autocast on GPU; ignored on CPU
    # "device": the split lives on the training device and is augmented there in batch
    # (fer_data.ResidentLoader); "loader": DataLoader workers running albumentations;
    # "auto": device on a GPU, loader on the CPU.
    augment_on: str = "auto"
    channels_last: bool = True  # NHWC activations on GPU (tensor-core friendly); ignored on CPU
    compile: bool = False  # torch.compile the network (first epoch pays the compilation)
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    eval_tta: str = "flip"  # TTA used for the per-epoch PublicTest check
    max_steps: int = 0  # >0: stop each epoch after this many steps (smoke runs)
    train_subset: int = 0  # >0: a seeded random N training images only (smoke runs)
    eval_subset: int = 0  # >0: a random N PublicTest images for the per-epoch check (smoke runs)


def build_model(config: FerConfig) -> nn.Module:
    return models.create_model(config.model, **model_kwargs(config))


def model_kwargs(config: FerConfig) -> dict:
    return {"num_classes": len(EXPRESSIONS), "in_chans": 1, "dropout": config.dropout, **config.model_kwargs}


def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, dict]:
    """The trained network of a checkpoint written by `train`, in eval mode, with its checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = models.create_model(checkpoint["model"]["name"], **checkpoint["model"]["kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


# --------------------------------------------------------------------------- evaluation


Predictor = Callable[[np.ndarray], np.ndarray]  # (N, 1, 48, 48) float32 -> (N, 7) logits


def torch_predictor(model: nn.Module, device: torch.device | str = "cpu", amp: bool = False) -> Predictor:
    """amp: bf16 autocast when on a GPU (the per-epoch check while training); fp32 otherwise."""
    device = torch.device(device)
    model = model.eval().to(device)

    @torch.inference_mode()
    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            return model(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    return predict


def onnx_predictor(path: str | Path) -> Predictor:
    from stra_face.training.export.onnx_export import onnx_session

    session = onnx_session(path)
    return lambda batch: session.run(["output"], {"input": batch})[0]


# Names of the views tta_views returns per mode: a view shared by several modes (the unmirrored
# image is "none" and the first of "flip") runs once when they are evaluated together.
TTA_VIEW_NAMES = {"none": ("plain",), "flip": ("plain", "mirror"), "tencrop": tuple(f"crop{i}" for i in range(10))}


def predict_tta_probabilities(predict: Predictor, data: FerData, ttas: Sequence[str], batch_size: int = 256, progress: bool = False) -> dict[str, np.ndarray]:
    """Per TTA mode, softmax probabilities averaged over its views, (N, 7); each distinct view is predicted once."""
    from tqdm import tqdm

    dataset = FerDataset(data)
    outputs: dict[str, list[np.ndarray]] = {tta: [] for tta in ttas}
    for start in tqdm(range(0, len(dataset), batch_size), desc="predict", disable=not progress, leave=False):
        batch = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
        predicted: dict[str, torch.Tensor] = {}
        for tta in ttas:
            for name, view in zip(TTA_VIEW_NAMES[tta], tta_views(batch, tta)):
                if name not in predicted:
                    predicted[name] = torch.softmax(torch.from_numpy(predict(view.numpy())), dim=1)
            outputs[tta].append(torch.stack([predicted[name] for name in TTA_VIEW_NAMES[tta]]).mean(0).numpy())
    return {tta: np.concatenate(chunks) for tta, chunks in outputs.items()}


def predict_probabilities(predict: Predictor, data: FerData, tta: str = "none", batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Softmax probabilities averaged over the TTA views, (N, 7)."""
    return predict_tta_probabilities(predict, data, [tta], batch_size, progress)[tta]


@dataclass
class SplitReport:
    split: str
    tta: str
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted


def evaluate_ttas(predict: Predictor, data: FerData, split: str, ttas: Sequence[str], progress: bool = False, limit: int = 0) -> list[SplitReport]:
    """One report per TTA mode on one split, sharing the views the modes have in common."""
    subset = data.split(split)
    if limit:
        subset = subset.sample(limit)
    reports = []
    for tta, probabilities in predict_tta_probabilities(predict, subset, ttas, progress=progress).items():
        predictions = probabilities.argmax(1)
        confusion = np.zeros((len(EXPRESSIONS), len(EXPRESSIONS)), np.int64)
        np.add.at(confusion, (subset.labels, predictions), 1)
        per_class = {name: float(confusion[i, i] / max(1, confusion[i].sum())) for i, name in enumerate(EXPRESSIONS)}
        reports.append(SplitReport(split, tta, float((predictions == subset.labels).mean()), per_class, confusion.tolist()))
    return reports


def evaluate(predict: Predictor, data: FerData, split: str, tta: str, progress: bool = False, limit: int = 0) -> SplitReport:
    return evaluate_ttas(predict, data, split, [tta], progress, limit)[0]


def plot_confusion(report: SplitReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(report.confusion, np.float64)
    normalised = confusion / confusion.sum(1, keepdims=True).clip(min=1)
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(EXPRESSIONS)):
        for j in range(len(EXPRESSIONS)):
            axis.text(j, i, f"{normalised[i, j]:.2f}\n({int(confusion[i, j])})", ha="center", va="center", fontsize=7, color="white" if normalised[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(EXPRESSIONS)), EXPRESSIONS, rotation=45)
    axis.set_yticks(range(len(EXPRESSIONS)), EXPRESSIONS)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"FER2013 {report.split} (TTA {report.tta}): accuracy {report.accuracy:.2%}")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --------------------------------------------------------------------------- training


def make_train_loader(config: FerConfig, train_data: FerData, runtime: engine.Runtime):
    augment_on = config.augment_on if config.augment_on != "auto" else ("device" if runtime.device.type == "cuda" else "loader")
    if augment_on == "device":
        return ResidentLoader(train_data, config.batch_size, runtime.device, seed=config.seed, rank=runtime.rank, world_size=runtime.world_size)
    if augment_on == "loader":
        return engine.make_loader(FerDataset(train_data, fer_train_augmentation()), config.batch_size, runtime, train=True, workers=config.workers, seed=config.seed)
    raise ValueError(f"augment_on must be auto, device or loader, not {config.augment_on!r}")


def train(config: FerConfig) -> Path:
    runtime = engine.setup_runtime(config.device)
    engine.seed_everything(config.seed, runtime.rank)
    out = Path(config.out)
    checkpointer = engine.Checkpointer(out, runtime)
    log = engine.CSVLog(out / "log.csv", runtime)
    if runtime.is_main:
        engine.save_config(config, out / "config.json")

    data = load_fer2013(config.data)
    train_data = data.split("Training")
    if config.train_subset:
        train_data = train_data.sample(config.train_subset, config.seed)
    loader = make_train_loader(config, train_data, runtime)
    on_gpu = runtime.device.type == "cuda"
    channels_last = config.channels_last and on_gpu
    if on_gpu:
        torch.backends.cudnn.benchmark = True  # fixed 48x48 shapes: pick the fastest kernels once (as stra_face/training/face/trainer.py)

    model = build_model(config).to(runtime.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    steps_per_epoch = min(len(loader), config.max_steps or len(loader))
    lr = config.lr * config.batch_size * runtime.world_size / 64
    optimizer = engine.build_optimizer([model], config.optimizer, lr, config.weight_decay)
    scheduler = engine.warmup_cosine(optimizer, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch))
    start_epoch, best = 0, -1.0
    state = checkpointer.load_last()
    if state is not None:
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = state["epoch"] + 1, state["best_metric"]
        if runtime.is_main:
            print(f"resumed from {checkpointer.last} at epoch {start_epoch} (best PublicTest {best:.4f})")
    ddp_model = engine.wrap_ddp(model, runtime)
    if config.compile:
        ddp_model = torch.compile(ddp_model)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def step(net: nn.Module, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
        images, labels = batch
        logits = net(images)
        return criterion(logits.float(), labels), (logits.argmax(1) == labels).sum(), len(labels)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        stats = engine.train_one_epoch(
            ddp_model, loader, step, optimizer, scheduler, runtime, epoch=epoch, amp=config.amp,
            diversity_weight=config.diversity_weight, grad_clip=config.grad_clip, max_steps=config.max_steps,
            channels_last=channels_last,
        )
        if runtime.is_main:
            # Model selection on PublicTest only; PrivateTest stays untouched until `eval`.
            public = evaluate(torch_predictor(model, runtime.device, amp=config.amp), data, "PublicTest", config.eval_tta, limit=config.eval_subset)
            is_best = public.accuracy > best
            best = max(best, public.accuracy)
            checkpointer.save(
                {
                    "model": {"name": config.model, "kwargs": model_kwargs(config)},
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "best_metric": best,
                    "public_accuracy": public.accuracy,
                    "config": dataclasses.asdict(config),
                },
                is_best,
            )
            row = {
                "epoch": epoch, "train_loss": round(stats.loss, 5), "train_accuracy": round(stats.accuracy, 5),
                "diversity": round(stats.diversity, 5), f"public_accuracy_{config.eval_tta}": round(public.accuracy, 5),
                "lr": scheduler.get_last_lr()[0], "images_per_second": round(stats.images_per_second, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
            log.write(row)
            print(json.dumps(row), flush=True)
        if runtime.distributed:
            torch.distributed.barrier()
    engine.teardown_runtime(runtime)
    return checkpointer.best


# --------------------------------------------------------------------------- commands


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_eval(args: argparse.Namespace) -> dict:
    """Reports per split and TTA mode. With --json the reports are saved after each split, and a
    JSON from the same file (same sha256) is reused: an interrupted evaluation resumes."""
    source = args.onnx or args.checkpoint
    source_sha256 = sha256_file(source)
    saved = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}
    results = saved.get("reports", {}) if saved.get("source_sha256") == source_sha256 else {}
    predict = onnx_predictor(args.onnx) if args.onnx else torch_predictor(load_checkpoint_model(args.checkpoint)[0])
    data = load_fer2013(args.data)
    for split in args.splits:
        missing = [tta for tta in args.tta if f"{split}/{tta}" not in results]
        if missing:
            for report in evaluate_ttas(predict, data, split, missing, progress=True):
                results[f"{split}/{report.tta}"] = dataclasses.asdict(report)
            if args.json:
                Path(args.json).write_text(json.dumps({"source": str(source), "source_sha256": source_sha256, "reports": results}, indent=2))
        for tta in args.tta:
            report = SplitReport(**results[f"{split}/{tta}"])
            per_class = " ".join(f"{name} {acc:.3f}" for name, acc in report.per_class.items())
            print(f"{split:<12} tta={tta:<8} accuracy {report.accuracy:.4f}   per class: {per_class}")
            if args.plots:
                plot_confusion(report, Path(args.plots) / f"confusion_{split}_{tta}.png")
    return {key: results[key] for key in (f"{split}/{tta}" for split in args.splits for tta in args.tta)}


def has_mode_attention(model: nn.Module) -> bool:
    return any(isinstance(m, ModeAttention) for m in model.modules())


def run_ship(args: argparse.Namespace) -> None:
    """Export (parity-checked), re-evaluate the exported file, write the model card next to it.

    StRA models get a second output, `modes` (the last block's r_ig maps), for the service's
    `?modes=true`. A checkpoint trained elsewhere carries its provenance on the card
    (--code-revision, --hardware, --trained-with, --source)."""
    import onnxruntime

    from stra_face.training.export.onnx_export import check_parity, export_onnx

    model, checkpoint = load_checkpoint_model(args.checkpoint)
    out = Path(args.out)
    input_shape = (1, EXPRESSION_SIZE, EXPRESSION_SIZE)
    modes = has_mode_attention(model)
    exported = WithModes(model) if modes else model
    output_names = ("output", "modes") if modes else ("output",)
    export_onnx(exported, out, input_shape, fp16=args.fp16, output_names=output_names)
    parity = check_parity(exported, out, input_shape, fp16=args.fp16)
    results = {}
    # The cheap modes for both splits first: 10 of the 13 views are ten-crop.
    for ttas in ([tta for tta in args.tta if tta != "tencrop"], [tta for tta in args.tta if tta == "tencrop"]):
        eval_args = argparse.Namespace(onnx=out, checkpoint=None, data=args.data, splits=["PublicTest", "PrivateTest"], tta=ttas, plots=args.plots, json=args.json)
        results |= run_eval(eval_args) if ttas else {}
    outputs = {"output": "(N, 7) logits"}
    if modes:
        with torch.inference_mode():
            _, maps = exported(torch.zeros(1, *input_shape))
        groups, height, width = maps.shape[1:]
        outputs["modes"] = (
            f"(N, {groups}, {height}, {width}) r_ig mode coefficients of the last StRA block in [0, 1], "
            f"a {height}x{width} grid over the {EXPRESSION_SIZE}x{EXPRESSION_SIZE} input (cell = {EXPRESSION_SIZE // height} px)"
        )
    provenance = {
        "checkpoint": args.checkpoint.name,
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "code_revision": args.code_revision,
        "hardware": args.hardware,
        "trained_with": args.trained_with,
        "source": args.source,
        "note": checkpoint.get("note"),
    }
    card = {
        "task": "facial expression, 7 classes " + ", ".join(EXPRESSIONS),
        "file": out.name,
        "sha256": sha256_file(out),
        "size_bytes": out.stat().st_size,
        "precision": "fp16" if args.fp16 else "fp32",
        "input": "(N, 1, 48, 48) float32 grayscale in [-1, 1] (stra_face.vision.preprocess.to_expression_input)",
        "output": outputs["output"],
        "outputs": outputs,
        "parity_max_abs_error": parity,
        "model": checkpoint["model"],
        "recipe": checkpoint["config"],
        "provenance": {key: value for key, value in provenance.items() if value},
        "epochs_trained": checkpoint["epoch"] + 1,
        "epochs_scheduled": checkpoint["config"]["epochs"],
        "data": f"FER2013 ({Path(checkpoint['config']['data']).name}): trained on Training (28,709 images), "
        f"checkpoint chosen on PublicTest (best of {checkpoint['config']['epochs']} epochs), PrivateTest measured once",
        "metrics_measured_on": f"CPU, onnxruntime {onnxruntime.__version__}, from {out.name} itself",
        "metrics": {key: {"accuracy": value["accuracy"], "per_class": value["per_class"]} for key, value in results.items()},
        "reproduce": f"python -m stra_face.training.fer eval --onnx {out} --data {args.data} --tta {' '.join(args.tta)}",
    }
    card_path = out.with_suffix(".card.json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: {card['size_bytes'] / 2**20:.1f} MiB sha256 {card['sha256']} parity {parity:.2e}; card {card_path}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        train(engine.parse_config(FerConfig, argv[1:], "train a FER2013 expression classifier"))
        return
    if argv and argv[0] == "gpu-run":
        from stra_face.training.fer import gpu_run

        gpu_run.main(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m stra_face.training.fer", description="FER2013 expression classifier")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train (options: python -m stra_face.training.fer train --help)")
    commands.add_parser("gpu-run", help="StRA + baseline trained, evaluated, StRA shipped, one folder (python -m stra_face.training.fer gpu-run --help)")
    evaluation = commands.add_parser("eval", help="accuracy per split and class, confusion-matrix PNGs")
    source = evaluation.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--onnx", type=Path)
    evaluation.add_argument("--data", default=DEFAULT_DATA)
    evaluation.add_argument("--splits", nargs="+", default=["PublicTest", "PrivateTest"], choices=SPLITS)
    evaluation.add_argument("--tta", nargs="+", default=["none", "flip"], choices=["none", "flip", "tencrop"])
    evaluation.add_argument("--plots", help="folder for confusion-matrix PNGs")
    evaluation.add_argument("--json", help="write the reports as JSON (reused, and completed, when run again on the same file)")
    ship = commands.add_parser("ship", help="export a checkpoint to ONNX, re-evaluate it, write its model card")
    ship.add_argument("--checkpoint", type=Path, required=True)
    ship.add_argument("--out", type=Path, default=Path("stra_face/assets/models/expression.onnx"))
    ship.add_argument("--data", default=DEFAULT_DATA)
    ship.add_argument("--fp16", action="store_true")
    ship.add_argument("--tta", nargs="+", default=["none", "flip", "tencrop"], choices=["none", "flip", "tencrop"], help="TTA modes measured for the card")
    ship.add_argument("--plots", help="folder for confusion-matrix PNGs")
    ship.add_argument("--json", help="also write the full reports (with confusion matrices) as JSON; reused when the export is byte-identical")
    provenance = ship.add_argument_group("provenance", "for the card, when the checkpoint was trained elsewhere")
    provenance.add_argument("--code-revision", help="git revision of the code that trained it")
    provenance.add_argument("--hardware", help="e.g. 'one NVIDIA H200, torch 2.11, bf16 autocast'")
    provenance.add_argument("--trained-with", help="the exact training command")
    provenance.add_argument("--source", help="where the checkpoint comes from")
    args = parser.parse_args(argv)
    {"eval": run_eval, "ship": run_ship}[args.command](args)


if __name__ == "__main__":
    main()
