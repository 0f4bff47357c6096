"""Face-embedding training: margin softmax on labelled identities + similarity distillation from a teacher.

    python -m training.face prepare --src raw_photos/ --dst aligned/          # <identity>/<photo> -> aligned 112x112
    python -m training.face train --config training/configs/face_cpu_stra.toml
    torchrun --nproc_per_node 8 -m training.face train --config ...           # DDP, same script
    python -m training.face ship --checkpoint runs/face/cpu_stra/last.pt --cfp ../shared/data/cfp

Model selection uses held-out training identities (never a benchmark): the last
`val_identities` folders are kept out of training and scored with the benchmark's 10-fold
protocol every epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import models
from training import engine
from training.benchmark import PairSet, contiguous_folds, evaluate_pairs
from training.embedders import embed_images, load_checkpoint_model, torch_embedder
from training.face_data import (
    FaceDataset, FaceRecord, face_train_augmentation, load_teacher_embeddings, scan_identity_folders, scan_unlabelled,
)
from training.margins import create_margin_head, similarity_distillation

DEFAULT_DATA = "../shared/data/celeba299/aligned112"


@dataclass
class FaceConfig:
    data: str = DEFAULT_DATA  # <identity>/<aligned 112x112 face>
    unlabelled: list = field(default_factory=list)  # folders of faces used for distillation only
    # [{"embeddings": "runs/teacher/celeba299.npz", "images": "<root the npz paths are relative to>"}]
    teachers: list = field(default_factory=list)
    out: str = "runs/face/resnet50_stra"
    model: str = "resnet50_stra"
    model_kwargs: dict = field(default_factory=dict)
    embedding_dim: int = 512
    dropout: float = 0.0
    head: str = "arcface"  # arcface, cosface, softmax
    scale: float = 64.0
    margin: float = 0.5
    distill_weight: float = 0.0
    epochs: int = 20
    batch_size: int = 64  # per process
    optimizer: str = "sgd"
    lr: float = 0.1  # for a global batch of 64, scaled linearly
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    diversity_weight: float = 0.0
    grad_clip: float = 5.0
    amp: bool = True
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    val_identities: int = 20
    max_steps: int = 0


def model_kwargs(config: FaceConfig) -> dict:
    return {"embedding_dim": config.embedding_dim, "dropout": config.dropout, **config.model_kwargs}


def validation_pairs(records: list[FaceRecord], seed: int, max_pairs: int = 1000) -> PairSet:
    """Genuine pairs within and impostor pairs across held-out identities, equal numbers, 10 folds."""
    rng = np.random.default_rng(seed)
    labels = np.array([r.label for r in records])
    genuine = [(i, j) for i in range(len(records)) for j in range(i + 1, len(records)) if labels[i] == labels[j]]
    genuine = [genuine[k] for k in rng.permutation(len(genuine))[:max_pairs]]
    impostor = set()
    while len(impostor) < len(genuine):
        i, j = rng.integers(0, len(records), 2)
        if labels[i] != labels[j]:
            impostor.add((int(min(i, j)), int(max(i, j))))
    pairs = np.array(genuine + sorted(impostor))
    issame = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]
    order = rng.permutation(len(pairs))  # mix genuine/impostor across folds
    return PairSet("val", [r.path for r in records], pairs[order], issame[order], contiguous_folds(len(pairs)))


def train(config: FaceConfig) -> Path:
    runtime = engine.setup_runtime(config.device)
    engine.seed_everything(config.seed, runtime.rank)
    out = Path(config.out)
    checkpointer = engine.Checkpointer(out, runtime)
    log = engine.CSVLog(out / "log.csv", runtime)
    if runtime.is_main:
        engine.save_config(config, out / "config.json")

    records, identities = scan_identity_folders(config.data)
    held_out = set(range(len(identities) - config.val_identities, len(identities)))
    train_records = [r for r in records if r.label not in held_out]
    val_records = [r for r in records if r.label in held_out]
    for folder in config.unlabelled:
        train_records += scan_unlabelled(folder)
    num_classes = len(identities) - config.val_identities
    teacher: dict[str, np.ndarray] = {}
    for source in config.teachers:
        teacher.update(load_teacher_embeddings(source["embeddings"], source["images"]))
    if teacher:
        # dlib's descriptors sit in a narrow cone (different people ~0.83 cosine); centred on
        # their mean they span [-1, 1] like a margin-trained embedding (different people ~0.0,
        # same person ~0.65), so matching similarities does not fight the margin loss.
        mean = np.mean(list(teacher.values()), axis=0)
        teacher = {path: (v - mean) / np.linalg.norm(v - mean) for path, v in teacher.items()}
    teacher_dim = len(next(iter(teacher.values()))) if teacher else 0
    if config.distill_weight and not teacher:
        raise ValueError("distill_weight > 0 needs `teachers` embeddings (python -m training.teacher)")
    if runtime.is_main:
        covered = sum(r.path in teacher for r in train_records)
        print(f"{len(train_records)} training faces ({num_classes} identities), {covered} with teacher vectors; {len(val_records)} validation faces")
    dataset = FaceDataset(train_records, face_train_augmentation(), teacher, teacher_dim)
    loader = engine.make_loader(dataset, config.batch_size, runtime, train=True, workers=config.workers, seed=config.seed)
    validation = validation_pairs(val_records, config.seed) if val_records else None

    model = models.create_model(config.model, **model_kwargs(config)).to(runtime.device)
    head = create_margin_head(config.head, config.embedding_dim, num_classes, config.scale, config.margin).to(runtime.device)
    steps_per_epoch = min(len(loader), config.max_steps or len(loader))
    lr = config.lr * config.batch_size * runtime.world_size / 64
    optimizer = engine.build_optimizer([model, head], config.optimizer, lr, config.weight_decay)
    scheduler = engine.warmup_cosine(optimizer, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch))
    start_epoch, best = 0, -1.0
    state = checkpointer.load_last()
    if state is not None:
        model.load_state_dict(state["state_dict"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = state["epoch"] + 1, state["best_metric"]
        if runtime.is_main:
            print(f"resumed from {checkpointer.last} at epoch {start_epoch}")

    class Trainable(nn.Module):  # backbone + margin head under one DDP wrapper
        def __init__(self):
            super().__init__()
            self.backbone, self.head = model, head

        def forward(self, images, labels):
            embeddings = self.backbone(images)
            return embeddings, self.head(embeddings, labels)

    trainable = engine.wrap_ddp(Trainable(), runtime)
    cross_entropy = nn.CrossEntropyLoss(ignore_index=-1)

    def step(net: nn.Module, batch: tuple) -> tuple[torch.Tensor, torch.Tensor, int]:
        images, labels, teacher_vectors = batch
        embeddings, logits = net(images, labels)
        labelled = labels >= 0
        loss = cross_entropy(logits, labels) if labelled.any() else logits.sum() * 0
        if config.distill_weight:
            loss = loss + config.distill_weight * similarity_distillation(embeddings, teacher_vectors)
        correct = (logits.argmax(1)[labelled] == labels[labelled]).sum()
        return loss, correct, int(labelled.sum())

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        stats = engine.train_one_epoch(
            trainable, loader, step, optimizer, scheduler, runtime, epoch=epoch, amp=config.amp,
            diversity_weight=config.diversity_weight, grad_clip=config.grad_clip, max_steps=config.max_steps,
        )
        if runtime.is_main:
            val_accuracy = float("nan")
            if validation is not None:
                plain, mirrored = embed_images(torch_embedder(model, runtime.device), validation.images)
                val_accuracy = evaluate_pairs(validation, plain, mirrored).accuracy_mean
                model.train()
            is_best = val_accuracy > best
            best = max(best, val_accuracy)
            checkpointer.save(
                {
                    "model": {"name": config.model, "kwargs": model_kwargs(config)},
                    "state_dict": model.state_dict(), "head": head.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": epoch, "best_metric": best, "val_accuracy": val_accuracy,
                    "config": dataclasses.asdict(config), "identities": identities,
                },
                is_best,
            )
            row = {
                "epoch": epoch, "train_loss": round(stats.loss, 5), "train_accuracy": round(stats.accuracy, 5),
                "diversity": round(stats.diversity, 5), "val_verification_accuracy": round(val_accuracy, 5),
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


def prepare(args: argparse.Namespace) -> None:
    """<src>/<identity>/<photo> -> <dst>/<identity>/<photo>.jpg aligned with the service's detect + align."""
    import cv2
    from tqdm import tqdm

    from service.pipeline.align import align_face
    from service.pipeline.decode import ImageError, decode_image
    from service.pipeline.detect import FaceDetector

    detector = FaceDetector(min_face_size=args.min_face_size)
    photos = sorted(p for p in args.src.glob("*/*") if p.is_file())
    kept = skipped = 0
    args.dst.mkdir(parents=True, exist_ok=True)
    with (args.dst / "prepare_log.tsv").open("w") as log:
        log.write("path\tresult\tscore\n")
        for photo in tqdm(photos, desc="prepare", unit="photo"):
            try:
                image = decode_image(photo.read_bytes(), max_bytes=200 * 2**20, max_pixels=200_000_000)
            except ImageError as error:
                log.write(f"{photo}\t{error.code}\t\n")
                skipped += 1
                continue
            detections = detector.detect(image)
            if not detections:
                log.write(f"{photo}\tno_face\t\n")
                skipped += 1
                continue
            target = args.dst / photo.parent.name / (photo.stem + ".jpg")
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), cv2.cvtColor(align_face(image, detections[0].landmarks), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            log.write(f"{photo}\taligned\t{detections[0].score:.4f}\n")
            kept += 1
    print(f"{kept} faces aligned into {args.dst}, {skipped} photos skipped (see prepare_log.tsv)")


def ship(args: argparse.Namespace) -> None:
    """Export (parity-checked), benchmark the exported file on CFP, calibrate thresholds, write the card."""
    from service.inference import sha256_file
    from training import benchmark
    from training.export import check_parity, export_onnx

    model, checkpoint = load_checkpoint_model(args.checkpoint)
    out = Path(args.out)
    export_onnx(model, out, (3, 112, 112), fp16=args.fp16)
    parity = check_parity(model, out, (3, 112, 112), fp16=args.fp16)
    command = ["--onnx", str(out), "--cfp", str(args.cfp), "--out", str(args.report), "--calibrate", "cfp_fp", "--thresholds-file", str(args.thresholds_file)]
    results = benchmark.main(command)
    card = {
        "task": "face embedding (512-d, L2-normalise; cosine similarity)",
        "file": out.name, "sha256": sha256_file(out), "size_bytes": out.stat().st_size,
        "precision": "fp16" if args.fp16 else "fp32",
        "input": "(N, 3, 112, 112) float32 RGB in [-1, 1], ArcFace-aligned (service.pipeline.align.align_face)",
        "input_kind": "arcface_112", "embedding_dim": checkpoint["model"]["kwargs"]["embedding_dim"],
        "output": "(N, 512) embedding (not normalised)",
        "parity_max_abs_error": parity,
        "model": checkpoint["model"], "recipe": checkpoint["config"], "epochs_trained": checkpoint["epoch"] + 1,
        "validation_verification_accuracy": checkpoint.get("val_accuracy"),
        "metrics": {name: {k: v for k, v in dataclasses.asdict(r).items() if k != "roc"} for name, r in results.items()},
        "thresholds": f"{args.thresholds_file.name}, calibrated on CFP-FP impostor pairs",
        "data": {
            "labelled": f'{checkpoint["config"]["data"]} ({len(checkpoint["identities"])} identities, '
            f'the last {checkpoint["config"]["val_identities"]} held out for model selection)',
            "distillation": [teacher["embeddings"] for teacher in checkpoint["config"]["teachers"]],
            "benchmark": f"CFP ({args.cfp}), never trained on",
        },
        "limitations": "identities seen in training are few (read the card's data): compare CFP-FP TAR@FAR "
        "with your own needs before trusting `verified`; no fairness audit has been run",
        "reproduce": "python -m training.benchmark " + " ".join(command),
    }
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: {card['size_bytes'] / 2**20:.1f} MiB, sha256 {card['sha256']}, parity {parity:.2e}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        train(engine.parse_config(FaceConfig, argv[1:], "train a face-embedding model"))
        return
    parser = argparse.ArgumentParser(prog="python -m training.face", description="face-embedding training")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train (options: python -m training.face train --help)")
    prep = commands.add_parser("prepare", help="raw photos in identity folders -> aligned 112x112 faces")
    prep.add_argument("--src", type=Path, required=True)
    prep.add_argument("--dst", type=Path, required=True)
    prep.add_argument("--min-face-size", type=int, default=40)
    shipping = commands.add_parser("ship", help="export a checkpoint, benchmark it on CFP, calibrate, write the card")
    shipping.add_argument("--checkpoint", type=Path, required=True)
    shipping.add_argument("--out", type=Path, default=Path("service/assets/models/face_embedding.onnx"))
    shipping.add_argument("--cfp", type=Path, default=Path("../shared/data/cfp"))
    shipping.add_argument("--report", type=Path, default=Path("runs/bench/shipped"))
    shipping.add_argument("--thresholds-file", type=Path, default=Path("service/assets/models/thresholds.json"))
    shipping.add_argument("--fp16", action="store_true")
    args = parser.parse_args(argv)
    {"prepare": prepare, "ship": ship}[args.command](args)


if __name__ == "__main__":
    main()
