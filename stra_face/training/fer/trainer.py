"""FER2013 / FER+ expression classifier: train, evaluate, ship (the command line is cli.py).

    python -m stra_face.training.fer train --config stra_face/training/configs/fer_gpu_stra.toml
    python -m stra_face.training.fer train --config ... --labels ferplus              # FER+ vote distributions
    torchrun --nproc_per_node 2 -m stra_face.training.fer train --config ...          # DDP, same script
    python -m stra_face.training.fer eval --checkpoint runs/fer/resnet50_stra/best.pt --data ... --tta flip
    python -m stra_face.training.fer eval --onnx stra_face/assets/models/expression.onnx --data ...
    python -m stra_face.training.fer ship --checkpoint runs/fer/resnet50_stra/best.pt \\
        --out stra_face/assets/models/expression.onnx
    python -m stra_face.training.fer gpu-run --out runs/fer/gpu  # StRA + baseline, evaluated, StRA shipped (gpu_run.py)

Protocol: train on Training, pick the checkpoint on PublicTest, report PrivateTest once. `eval`
reports FER2013 (the original labels) and FER+ (majority of the 10 annotators, ferplus.py) per split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stra_face import models
from stra_face.models.stra import ModeAttention, WithModes
from stra_face.training import engine
from stra_face.training.fer import ferplus
from stra_face.training.fer.config import BENCHMARKS, DEFAULT_DATA, FerConfig
from stra_face.training.fer.data import (
    FerData,
    FerDataset,
    ResidentLoader,
    fer_train_augmentation,
    load_fer2013,
    tta_views,
)
from stra_face.vision.preprocess import EXPRESSION_SIZE, EXPRESSIONS


def build_model(config: FerConfig) -> nn.Module:
    return models.create_model(config.model, **model_kwargs(config))


def num_classes(config: FerConfig) -> int:
    return config.ferplus_classes if config.labels == "ferplus" else len(EXPRESSIONS)


def model_kwargs(config: FerConfig) -> dict:
    return {"num_classes": num_classes(config), "in_chans": 1, "dropout": config.dropout, **config.model_kwargs}


def labelled_data(config: FerConfig, data: FerData) -> tuple[FerData, FerData]:
    """(what to train on, what to pick the checkpoint on): FER2013 labels for both, or FER+ labels
    in the configured mode for training and the FER+ benchmark's majority labels for selection."""
    if config.labels == "fer2013":
        return data, data
    if config.labels != "ferplus":
        raise ValueError(f"labels must be one of {ferplus.LABEL_SETS}, not {config.labels!r}")
    votes = ferplus.read_votes(config.ferplus_votes or ferplus.default_votes_path(config.data))
    return (
        ferplus.relabel(data, votes, config.ferplus_mode, config.ferplus_classes),
        ferplus.relabel(data, votes, "majority", config.ferplus_classes),
    )


def load_checkpoint_model(path: str | Path) -> tuple[nn.Module, dict]:
    """The trained network of a checkpoint written by `train`, in eval mode, with its checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = models.create_model(checkpoint["model"]["name"], **checkpoint["model"]["kwargs"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


# --------------------------------------------------------------------------- evaluation


Predictor = Callable[[np.ndarray], np.ndarray]  # (N, 1, 48, 48) float32 -> (N, K) logits, K = 7 (or 8 with contempt)


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


def predict_tta_probabilities(
    predict: Predictor, data: FerData, ttas: Sequence[str], batch_size: int = 256, progress: bool = False
) -> dict[str, np.ndarray]:
    """Per TTA mode, softmax probabilities averaged over its views, (N, K); each distinct view is predicted once."""
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


def predict_probabilities(
    predict: Predictor, data: FerData, tta: str = "none", batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Softmax probabilities averaged over the TTA views, (N, K)."""
    return predict_tta_probabilities(predict, data, [tta], batch_size, progress)[tta]


@dataclass
class SplitReport:
    split: str
    tta: str
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    benchmark: str = "fer2013"  # a key of BENCHMARKS
    images: int = 0  # how many images were scored (FER+ leaves some out)


def score(
    probabilities: np.ndarray, labels: np.ndarray, split: str, tta: str, benchmark: str = "fer2013"
) -> SplitReport:
    """Accuracy, per-class accuracy and confusion matrix of (N, K) probabilities against class indices."""
    classes = ferplus.class_names(probabilities.shape[1])
    predictions = probabilities.argmax(1)
    confusion = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = {name: float(confusion[i, i] / max(1, confusion[i].sum())) for i, name in enumerate(classes)}
    accuracy = float((predictions == labels).mean()) if len(labels) else 0.0
    return SplitReport(split, tta, accuracy, per_class, confusion.tolist(), benchmark, len(labels))


def evaluate_ttas(
    predict: Predictor, data: FerData, split: str, ttas: Sequence[str], progress: bool = False, limit: int = 0
) -> list[SplitReport]:
    """One report per TTA mode on one split of `data` (with its own labels), sharing the views the modes have in
    common."""
    subset = data.split(split)
    if limit:
        subset = subset.sample(limit)
    return [
        score(probabilities, subset.labels, split, tta)
        for tta, probabilities in predict_tta_probabilities(predict, subset, ttas, progress=progress).items()
    ]


def evaluate(
    predict: Predictor, data: FerData, split: str, tta: str, progress: bool = False, limit: int = 0
) -> SplitReport:
    return evaluate_ttas(predict, data, split, [tta], progress, limit)[0]


def report_key(benchmark: str, split: str, tta: str) -> str:
    """ "PrivateTest/flip" for FER2013 (the key cards and JSON reports have always used), "ferplus/PrivateTest/flip"
    for FER+."""
    return f"{split}/{tta}" if benchmark == "fer2013" else f"{benchmark}/{split}/{tta}"


def benchmark_reports(
    predict: Predictor,
    data: FerData,
    votes: ferplus.FerPlusVotes | None,
    split: str,
    ttas: Sequence[str],
    progress: bool = False,
) -> dict[str, SplitReport]:
    """FER2013 and (with `votes`) FER+ reports for one split, from one prediction pass over its images.
    FER+: majority labels (ferplus.majority_labels) over as many classes as the model has."""
    in_split = data.usage == split
    reports = {}
    for tta, probabilities in predict_tta_probabilities(predict, data.take(in_split), ttas, progress=progress).items():
        reports[report_key("fer2013", split, tta)] = score(probabilities, data.labels[in_split], split, tta)
        if votes is not None:
            majority = ferplus.majority_labels(votes, probabilities.shape[1])[in_split]
            kept = majority >= 0
            reports[report_key("ferplus", split, tta)] = score(
                probabilities[kept], majority[kept], split, tta, "ferplus"
            )
    return reports


def plot_confusion(report: SplitReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(report.per_class)
    confusion = np.asarray(report.confusion, np.float64)
    normalised = confusion / confusion.sum(1, keepdims=True).clip(min=1)
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            axis.text(
                j,
                i,
                f"{normalised[i, j]:.2f}\n({int(confusion[i, j])})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    axis.set_xticks(range(len(classes)), classes, rotation=45)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{BENCHMARKS[report.benchmark]} {report.split} (TTA {report.tta}): accuracy {report.accuracy:.2%}")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# --------------------------------------------------------------------------- training


def make_train_loader(config: FerConfig, train_data: FerData, runtime: engine.Runtime):
    augment_on = (
        config.augment_on if config.augment_on != "auto" else ("device" if runtime.device.type == "cuda" else "loader")
    )
    if augment_on == "device":
        return ResidentLoader(
            train_data,
            config.batch_size,
            runtime.device,
            seed=config.seed,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
    if augment_on == "loader":
        return engine.make_loader(
            FerDataset(train_data, fer_train_augmentation()),
            config.batch_size,
            runtime,
            train=True,
            workers=config.workers,
            seed=config.seed,
        )
    raise ValueError(f"augment_on must be auto, device or loader, not {config.augment_on!r}")


def mixup(images: torch.Tensor, targets: torch.Tensor, classes: int, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """mixup (Zhang et al., 2018): each image blended with another of the batch, and its target
    (one-hot class or soft label, cross-entropy takes either) with the same weight."""
    if not targets.is_floating_point():
        targets = nn.functional.one_hot(targets, classes).float()
    weight = float(np.random.beta(alpha, alpha))
    partner = torch.randperm(len(images), device=images.device)
    return weight * images + (1 - weight) * images[partner], weight * targets + (1 - weight) * targets[partner]


def train(config: FerConfig) -> Path:
    runtime = engine.setup_runtime(config.device)
    engine.seed_everything(config.seed, runtime.rank)
    out = Path(config.out)
    checkpointer = engine.Checkpointer(out, runtime)
    log = engine.CSVLog(out / "log.csv", runtime)
    if runtime.is_main:
        engine.save_config(config, out / "config.json")

    data, selection_data = labelled_data(config, load_fer2013(config.data))
    train_data = data.split("Training")
    if config.train_subset:
        train_data = train_data.sample(config.train_subset, config.seed)
    loader = make_train_loader(config, train_data, runtime)
    on_gpu = runtime.device.type == "cuda"
    channels_last = config.channels_last and on_gpu
    if on_gpu:
        torch.backends.cudnn.benchmark = (
            True  # fixed 48x48 shapes: pick the fastest kernels once (as stra_face/training/face/trainer.py)
        )

    model = build_model(config).to(
        runtime.device, memory_format=torch.channels_last if channels_last else torch.preserve_format
    )
    steps_per_epoch = min(len(loader), config.max_steps or len(loader))
    lr = config.lr * config.batch_size * runtime.world_size / 64
    optimizer = engine.build_optimizer([model], config.optimizer, lr, config.weight_decay)
    scheduler = engine.warmup_cosine(
        optimizer, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)
    )
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
        images, targets = batch  # class indices, or (B, K) FER+ vote shares
        if config.mixup:
            images, targets = mixup(images, targets, num_classes(config), config.mixup)
        logits = net(images)
        # accuracy against the most-voted (or, mixed, the heavier) class
        labels = targets.argmax(1) if targets.is_floating_point() else targets
        return criterion(logits.float(), targets), (logits.argmax(1) == labels).sum(), len(labels)

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        stats = engine.train_one_epoch(
            ddp_model,
            loader,
            step,
            optimizer,
            scheduler,
            runtime,
            epoch=epoch,
            amp=config.amp,
            diversity_weight=config.diversity_weight,
            grad_clip=config.grad_clip,
            max_steps=config.max_steps,
            channels_last=channels_last,
        )
        if runtime.is_main:
            # Model selection on PublicTest only; PrivateTest stays untouched until `eval`.
            public = evaluate(
                torch_predictor(model, runtime.device, amp=config.amp),
                selection_data,
                "PublicTest",
                config.eval_tta,
                limit=config.eval_subset,
            )
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
                "epoch": epoch,
                "train_loss": round(stats.loss, 5),
                "train_accuracy": round(stats.accuracy, 5),
                "diversity": round(stats.diversity, 5),
                f"public_accuracy_{config.eval_tta}": round(public.accuracy, 5),
                "lr": scheduler.get_last_lr()[0],
                "images_per_second": round(stats.images_per_second, 1),
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


def find_votes(
    data: str | Path, votes: str | Path | None = None, required: bool = False
) -> ferplus.FerPlusVotes | None:
    """FER+ votes from `votes`, else from ferplus_votes.npz next to `data` when it is there."""
    path = Path(votes) if votes else ferplus.default_votes_path(data)
    if votes or required or path.exists():
        return ferplus.read_votes(path)
    print(f"no FER+ votes at {path}: FER2013 labels only (--ferplus-votes names the file)")
    return None


def print_report(key: str, report: SplitReport) -> None:
    per_class = " ".join(f"{name} {acc:.3f}" for name, acc in report.per_class.items())
    print(
        f"{BENCHMARKS[report.benchmark]:<8} {report.split:<12} tta={report.tta:<8} accuracy {report.accuracy:.4f} "
        f"({report.images} images)   per class: {per_class}"
    )


def run_eval(
    *,
    checkpoint: Path | None = None,
    onnx: Path | None = None,
    data: str = DEFAULT_DATA,
    splits: Sequence[str] = ("PublicTest", "PrivateTest"),
    tta: Sequence[str] = ("none", "flip"),
    benchmarks: Sequence[str] | None = None,
    ferplus_votes: str | Path | None = None,
    plots: str | Path | None = None,
    json_path: str | Path | None = None,
) -> dict[str, dict]:
    """Reports per benchmark, split and TTA mode, for a checkpoint or an ONNX file. `benchmarks`:
    keys of BENCHMARKS; by default FER2013, and FER+ when its votes are found (`ferplus_votes`,
    default ferplus_votes.npz next to `data`). With `json_path` the reports are saved after each split, and a JSON
    from the same file (same sha256) is reused: an interrupted evaluation resumes."""
    source = onnx or checkpoint
    if source is None:
        raise ValueError("run_eval needs a checkpoint or an ONNX file")
    source_sha256 = sha256_file(source)
    saved = json.loads(Path(json_path).read_text()) if json_path and Path(json_path).exists() else {}
    results = saved.get("reports", {}) if saved.get("source_sha256") == source_sha256 else {}
    predict = onnx_predictor(onnx) if onnx else torch_predictor(load_checkpoint_model(checkpoint)[0])
    images = load_fer2013(data)
    votes = find_votes(data, ferplus_votes, required=True) if benchmarks and "ferplus" in benchmarks else None
    if benchmarks is None:
        votes = find_votes(data, ferplus_votes)
        benchmarks = ["fer2013", "ferplus"] if votes is not None else ["fer2013"]
    wanted = [report_key(b, split, t) for b in benchmarks for split in splits for t in tta]
    for split in splits:
        missing = [t for t in tta if any(report_key(b, split, t) not in results for b in benchmarks)]
        if missing:
            for key, report in benchmark_reports(predict, images, votes, split, missing, progress=True).items():
                results[key] = dataclasses.asdict(report)
            if json_path:
                Path(json_path).write_text(
                    json.dumps({"source": str(source), "source_sha256": source_sha256, "reports": results}, indent=2)
                )
    for key in wanted:
        report = SplitReport(**results[key])
        print_report(key, report)
        if plots:
            plot_confusion(report, Path(plots) / f"confusion_{key.replace('/', '_')}.png")
    return {key: results[key] for key in wanted}


def has_mode_attention(model: nn.Module) -> bool:
    return any(isinstance(m, ModeAttention) for m in model.modules())


FERPLUS_PROTOCOL = (
    "FER+ majority vote of the 10 annotators per image (microsoft/FERPlus fer2013new.csv); images left out: "
    "tied majority, majority unknown or not-a-face, majority contempt (7-class model), not matched to FER+"
)


def ship(
    checkpoint: Path,
    out: Path = Path("stra_face/assets/models/expression.onnx"),
    data: str = DEFAULT_DATA,
    *,
    fp16: bool = False,
    tta: Sequence[str] = ("none", "flip", "tencrop"),
    ferplus_votes: str | Path | None = None,
    plots: str | Path | None = None,
    json_path: str | Path | None = None,
    provenance: dict[str, str | None] | None = None,
    card_extra: dict | None = None,
) -> dict:
    """Export (parity-checked), re-evaluate the exported file on FER2013 and (votes found) FER+,
    write the model card next to it and return it.

    StRA models get a second output, `modes` (the last block's r_ig maps), for the service's
    `?modes=true`. `provenance` (code_revision, hardware, trained_with, source) goes on the card
    for a checkpoint trained elsewhere; `card_extra` adds top-level card fields (gpu_run's)."""
    import onnxruntime

    from stra_face.training.export.onnx_export import check_parity, export_onnx

    model, state = load_checkpoint_model(checkpoint)
    out = Path(out)
    input_shape = (1, EXPRESSION_SIZE, EXPRESSION_SIZE)
    modes = has_mode_attention(model)
    exported = WithModes(model) if modes else model
    output_names = ("output", "modes") if modes else ("output",)
    export_onnx(exported, out, input_shape, fp16=fp16, output_names=output_names)
    parity = check_parity(exported, out, input_shape, fp16=fp16)
    benchmarks = ["fer2013", "ferplus"] if find_votes(data, ferplus_votes) is not None else ["fer2013"]
    results = {}
    # The cheap modes for both splits first: 10 of the 13 views are ten-crop.
    for ttas in ([t for t in tta if t != "tencrop"], [t for t in tta if t == "tencrop"]):
        if ttas:
            results |= run_eval(
                onnx=out,
                data=data,
                splits=["PublicTest", "PrivateTest"],
                tta=ttas,
                benchmarks=benchmarks,
                ferplus_votes=ferplus_votes,
                plots=plots,
                json_path=json_path,
            )
    classes = state["model"]["kwargs"].get("num_classes", len(EXPRESSIONS))
    outputs = {"output": f"(N, {classes}) logits"}
    if modes:
        with torch.inference_mode():
            _, maps = exported(torch.zeros(1, *input_shape))
        groups, height, width = maps.shape[1:]
        outputs["modes"] = (
            f"(N, {groups}, {height}, {width}) r_ig mode coefficients of the last StRA block in [0, 1], "
            f"a {height}x{width} grid over the {EXPRESSION_SIZE}x{EXPRESSION_SIZE} input "
            f"(cell = {EXPRESSION_SIZE // height} px)"
        )
    recorded = {
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": sha256_file(checkpoint),
        **(provenance or {}),
        "note": state.get("note"),
    }
    recipe = state["config"]
    labels = (
        "FER+ votes (" + recipe.get("ferplus_mode", "probability") + ")"
        if recipe.get("labels") == "ferplus"
        else "FER2013 labels"
    )
    metrics = {key: {"accuracy": value["accuracy"], "per_class": value["per_class"]} for key, value in results.items()}
    card = {
        "task": f"facial expression, {classes} classes " + ", ".join(ferplus.class_names(classes)),
        "file": out.name,
        "sha256": sha256_file(out),
        "size_bytes": out.stat().st_size,
        "precision": "fp16" if fp16 else "fp32",
        "input": "(N, 1, 48, 48) float32 grayscale in [-1, 1] (stra_face.vision.preprocess.to_expression_input)",
        "output": outputs["output"],
        "outputs": outputs,
        "parity_max_abs_error": parity,
        "model": state["model"],
        "recipe": recipe,
        "provenance": {key: value for key, value in recorded.items() if value},
        "epochs_trained": state["epoch"] + 1,
        "epochs_scheduled": recipe["epochs"],
        "data": f"FER2013 ({Path(recipe['data']).name}) with {labels}: trained on Training, "
        f"checkpoint chosen on PublicTest (best of {recipe['epochs']} epochs), PrivateTest measured once",
        "metrics_measured_on": f"CPU, onnxruntime {onnxruntime.__version__}, from {out.name} itself",
        "metrics": {key: value for key, value in metrics.items() if not key.startswith("ferplus/")},
        "reproduce": f"python -m stra_face.training.fer eval --onnx {out} --data {data} --tta {' '.join(tta)}",
    }
    if "ferplus" in benchmarks:
        card["ferplus_protocol"] = FERPLUS_PROTOCOL
        card["ferplus_metrics"] = {
            key.removeprefix("ferplus/"): {**value, "images": results[key]["images"]}
            for key, value in metrics.items()
            if key.startswith("ferplus/")
        }
    card |= card_extra or {}
    card_path = out.with_suffix(".card.json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: {card['size_bytes'] / 2**20:.1f} MiB sha256 {card['sha256']} parity {parity:.2e}; card {card_path}")
    return card


if __name__ == "__main__":
    raise SystemExit(
        "the command line is `python -m stra_face.training.fer <train|eval|ship|gpu-run>` "
        "(stra_face/training/fer/cli.py)"
    )
