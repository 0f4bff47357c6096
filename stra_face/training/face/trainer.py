"""Face-embedding training: margin softmax on labelled identities + on-the-fly distillation from a teacher.

    python -m stra_face.training.face.data pack ../shared/data/celeba299/aligned112 \\
        ../shared/data/celeba10k/aligned112 --out runs/data/celeba_faces.npz
    python -m stra_face.training.face train --config stra_face/training/configs/face_cpu_stra.toml
    torchrun --nproc_per_node 8 -m stra_face.training.face train --config ...    # DDP, same script
    python -m stra_face.training.face ship --checkpoint runs/face/cpu_stra/best.pt \\
        --cfp ../shared/data/cfp --lfw ../shared/data/lfw                        # -> runs/face/cpu_stra.onnx
    python -m stra_face.training.face pipeline --config stra_face/training/configs/face_gpu_celeba_distill.toml \\
        --out runs/face/gpu                                                      # both models, end to end
    python -m stra_face.training.face prepare --src raw_photos/ --dst aligned/   # <identity>/<photo> -> aligned 112x112

The teacher (dlib's ResNet, `stra_face.models.dlib_resnet`) runs inside the training loop on the same
random view as the student, rendered into its own 150x150 chip (`stra_face.training.face.data`), so
every epoch gives new targets. The margin loss covers identities with `min_faces` or more
faces; distillation covers every face. Model selection uses held-out training identities
(never a benchmark): the last `val_identities` identities with two or more faces are kept out
of training and scored with the benchmark's 10-fold protocol every epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stra_face import models
from stra_face.training import engine
from stra_face.training.eval.embedders import load_checkpoint_model, onnx_embedder, torch_embedder
from stra_face.training.eval.verification import (
    Calibration,
    PairSet,
    PairSources,
    VerificationResult,
    benchmark,
    contiguous_folds,
    evaluate_pairs,
    reproduce_command,
    table_row,
)
from stra_face.training.face.config import FaceConfig
from stra_face.training.face.data import FaceAugment, FaceDataset, open_faces
from stra_face.training.face.margins import create_margin_head, similarity_distillation
from stra_face.training.provenance import code_revision
from stra_face.vision.cards import CARD_SUFFIX, ModelCard, file_facts


def model_kwargs(config: FaceConfig) -> dict:
    return {"embedding_dim": config.embedding_dim, "dropout": config.dropout, **config.model_kwargs}


def load_teacher(config: FaceConfig) -> nn.Module | None:
    if config.teacher == "none":
        return None
    if config.teacher == "random":
        return models.create_model("dlib_resnet_v1")
    if config.teacher == "dlib":
        from stra_face.models.dlib_resnet import load_dlib_resnet

        return load_dlib_resnet(config.teacher_weights or None)
    raise ValueError(f"unknown teacher {config.teacher!r} (dlib, random, none)")


def teacher_descriptors(teacher: nn.Module, chips: torch.Tensor) -> torch.Tensor:
    """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) descriptors, in float32 (targets need no bf16 rounding)."""
    with torch.no_grad(), torch.autocast(chips.device.type, enabled=False):
        return teacher(chips.permute(0, 3, 1, 2).float()).float()


def split_identities(
    labels: np.ndarray, min_faces: int, val_identities: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training face indices, their margin labels: a class per identity with >= min_faces faces, else -1,
    validation face indices: every face of the last `val_identities` identities with two or more faces)."""
    counts = np.bincount(labels)
    paired = np.flatnonzero(counts >= 2)
    held_out = set(paired[len(paired) - val_identities :].tolist()) if val_identities else set()
    in_validation = np.array([label in held_out for label in labels], bool)
    train = np.flatnonzero(~in_validation)
    classes = [label for label in np.flatnonzero(counts >= min_faces) if label not in held_out]
    class_of = np.full(len(counts), -1)
    class_of[classes] = np.arange(len(classes))
    return train, class_of[labels[train]], np.flatnonzero(in_validation)


def validation_pairs(labels: np.ndarray, seed: int, max_pairs: int = 1000) -> PairSet:
    """Genuine pairs within and impostor pairs across held-out identities, equal numbers, 10 folds.
    Images are positions in `labels`."""
    rng = np.random.default_rng(seed)
    genuine = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels)) if labels[i] == labels[j]]
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    possible_impostors = (len(labels) ** 2 - int((counts**2).sum())) // 2
    # equal numbers of each: never more genuine pairs than there are impostor pairs to draw
    genuine = [genuine[k] for k in rng.permutation(len(genuine))[: min(max_pairs, possible_impostors)]]
    impostor = set()
    while len(impostor) < len(genuine):
        i, j = rng.integers(0, len(labels), 2)
        if labels[i] != labels[j]:
            impostor.add((int(min(i, j)), int(max(i, j))))
    pairs = np.array(genuine + sorted(impostor))
    issame = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]
    order = rng.permutation(len(pairs))  # mix genuine/impostor across folds
    return PairSet("val", list(range(len(labels))), pairs[order], issame[order], contiguous_folds(len(pairs)))


def embed_faces(
    model: nn.Module, device: torch.device, faces: np.ndarray, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, embeddings of the mirrors) of (N, 112, 112, 3) uint8 aligned faces."""
    embed = torch_embedder(model, device)
    plain = np.concatenate([embed(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)])
    mirrored = np.concatenate(
        [embed(np.ascontiguousarray(faces[i : i + batch_size, :, ::-1])) for i in range(0, len(faces), batch_size)]
    )
    return plain, mirrored


def train(config: FaceConfig) -> Path:
    runtime = engine.setup_runtime(config.device)
    engine.seed_everything(config.seed, runtime.rank)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    out = Path(config.out)
    checkpointer = engine.Checkpointer(out, runtime)
    log = engine.CSVLog(out / "log.csv", runtime)
    if runtime.is_main:
        engine.save_config(config, out / "config.json")

    hardware = f"{runtime.world_size} x " + (
        torch.cuda.get_device_name(runtime.device)
        if runtime.device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    faces = open_faces(config.data)
    subset = np.flatnonzero(faces.labels < config.identities) if config.identities else np.arange(len(faces))
    labels = faces.labels[subset]
    train_positions, train_labels, val_positions = split_identities(labels, config.min_faces, config.val_identities)
    train_indices, val_indices = subset[train_positions], subset[val_positions]
    num_classes = int(train_labels.max()) + 1
    class_names = sorted({faces.identities[labels[i]] for i, c in zip(train_indices, train_labels) if c >= 0})
    teacher = load_teacher(config)
    if config.distill_weight and teacher is None:
        raise ValueError("distill_weight > 0 needs a teacher")
    if runtime.is_main:
        print(
            f"{len(train_indices)} training faces: {int((train_labels >= 0).sum())} in {num_classes} margin classes, "
            f"{int((train_labels < 0).sum())} distillation-only; {len(val_indices)} validation faces; "
            f"teacher: {config.teacher}"
        )
    augment = FaceAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.augment.items()})
    dataset = FaceDataset(faces, train_indices, train_labels, augment, config.teacher_sees_degraded)
    loader = engine.make_loader(
        dataset, config.batch_size, runtime, train=True, workers=config.workers, seed=config.seed
    )
    validation = validation_pairs(labels[val_positions], config.seed) if len(val_indices) else None
    val_faces = np.stack([faces.image(int(i)) for i in val_indices]) if validation is not None else None

    model = models.create_model(config.model, **model_kwargs(config)).to(runtime.device)
    head = create_margin_head(config.head, config.embedding_dim, num_classes, config.scale, config.margin).to(
        runtime.device
    )
    steps_per_epoch = min(len(loader), config.max_steps or len(loader))
    lr = config.lr * config.batch_size * runtime.world_size / 64
    optimizer = engine.build_optimizer([model, head], config.optimizer, lr, config.weight_decay)
    scheduler = engine.warmup_cosine(
        optimizer, config.epochs * steps_per_epoch, int(config.warmup_epochs * steps_per_epoch)
    )
    start_epoch, best, teacher_mean = 0, -1.0, None
    state = checkpointer.load_last()
    if state is not None:
        model.load_state_dict(state["state_dict"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, teacher_mean = state["epoch"] + 1, state["best_metric"], state.get("teacher_mean")
        if runtime.is_main:
            print(f"resumed from {checkpointer.last} at epoch {start_epoch}")
    if teacher is not None:
        teacher = teacher.to(runtime.device).eval().requires_grad_(False)
        if teacher_mean is None:
            # dlib's descriptors sit in a narrow cone (different people ~0.83 cosine); centred on
            # their mean they span [-1, 1] like a margin-trained embedding (different people ~0.0,
            # same person ~0.65), so matching similarities does not fight the margin loss. The mean
            # of up to 2048 training faces as aligned, identical on every rank (same faces, no augmentation).
            every = max(1, len(train_indices) // 2048)
            sample = FaceDataset(faces, train_indices[::every], train_labels[::every])
            chips = torch.stack([sample[i][2] for i in range(len(sample))]).to(runtime.device)
            teacher_mean = torch.cat([teacher_descriptors(teacher, part) for part in chips.split(256)]).mean(0).cpu()
        teacher_mean = torch.as_tensor(teacher_mean, device=runtime.device)

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
        images, batch_labels, chips = batch
        embeddings, logits = net(images, batch_labels)
        labelled = batch_labels >= 0
        loss = cross_entropy(logits, batch_labels) if labelled.any() else logits.sum() * 0
        if config.distill_weight:
            targets = teacher_descriptors(teacher, chips) - teacher_mean
            loss = loss + config.distill_weight * similarity_distillation(embeddings, targets)
        correct = (logits.argmax(1)[labelled] == batch_labels[labelled]).sum()
        return loss, correct, int(labelled.sum())

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        stats = engine.train_one_epoch(
            trainable,
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
        )
        # every face, labelled or distillation-only (the engine counts the margin-labelled ones)
        faces_per_second = steps_per_epoch * config.batch_size * runtime.world_size / (time.perf_counter() - started)
        if runtime.is_main:
            val_accuracy = float("nan")
            if validation is not None:
                plain, mirrored = embed_faces(model, runtime.device, val_faces)
                val_accuracy = evaluate_pairs(validation, plain, mirrored).accuracy_mean
                model.train()
            is_best = not np.isfinite(val_accuracy) or val_accuracy > best  # without validation: the last epoch
            best = max(best, val_accuracy) if np.isfinite(val_accuracy) else best
            checkpointer.save(
                {
                    "model": {"name": config.model, "kwargs": model_kwargs(config)},
                    "state_dict": model.state_dict(),
                    "head": head.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "best_metric": best,
                    "val_accuracy": val_accuracy,
                    "teacher_mean": None if teacher_mean is None else teacher_mean.cpu(),
                    "config": dataclasses.asdict(config),
                    "identities": class_names,
                    "hardware": hardware,
                    "data_summary": {
                        "faces": len(faces),
                        "identities": len(faces.identities),
                        "training_faces": len(train_indices),
                        "margin_classes": num_classes,
                        "validation_faces": len(val_indices),
                    },
                },
                is_best,
            )
            row = {
                "epoch": epoch,
                "train_loss": round(stats.loss, 5),
                "train_accuracy": round(stats.accuracy, 5),
                "diversity": round(stats.diversity, 5),
                "val_verification_accuracy": round(val_accuracy, 5),
                "lr": scheduler.get_last_lr()[0],
                "images_per_second": round(faces_per_second, 1),
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

    from stra_face.vision.align import align_face
    from stra_face.vision.decode import ImageError, decode_image
    from stra_face.vision.detect import FaceDetector

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
            cv2.imwrite(
                str(target),
                cv2.cvtColor(align_face(image, detections[0].landmarks), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95],
            )
            log.write(f"{photo}\taligned\t{detections[0].score:.4f}\n")
            kept += 1
    print(f"{kept} faces aligned into {args.dst}, {skipped} photos skipped (see prepare_log.tsv)")


def ship(
    checkpoint_path: Path,
    out: Path,
    sources: PairSources,
    report: Path,
    thresholds_file: Path,
    fp16: bool,
    training_minutes: float | None = None,
) -> tuple[ModelCard, dict[str, VerificationResult]]:
    """Export (parity-checked), benchmark the exported file (CFP-FP calibrates its thresholds), and
    write its card beside it, once; returns the card and the benchmark results."""
    from stra_face.training.export.onnx_export import check_parity, export_onnx

    model, checkpoint = load_checkpoint_model(checkpoint_path)
    export_onnx(model, out, (3, 112, 112), fp16=fp16)
    parity = check_parity(model, out, (3, 112, 112), fp16=fp16)
    recipe, summary = checkpoint["config"], checkpoint.get("data_summary", {})
    dim = recipe["embedding_dim"]
    card = ModelCard(
        task=f"face embedding ({dim}-d, L2-normalise; cosine similarity)",
        **file_facts(out),
        precision="fp16" if fp16 else "fp32",
        input="(N, 3, 112, 112) float32 RGB in [-1, 1], ArcFace-aligned (stra_face.vision.align.align_face)",
        input_kind="arcface_112",
        embedding_dim=dim,
        output=f"(N, {dim}) embedding (not normalised)",
        parity_max_abs_error=parity,
        model=checkpoint["model"],
        recipe=recipe,
    )
    calibration = Calibration("cfp_fp", out, thresholds_file)
    results = benchmark(onnx_embedder(out, card=card), out.stem, sources.load(), report, calibration=calibration)
    card.extra = {
        "epochs_trained": checkpoint["epoch"] + 1,
        "validation_verification_accuracy": checkpoint.get("val_accuracy"),
    }
    card.metrics = {name: {k: v for k, v in dataclasses.asdict(r).items() if k != "roc"} for name, r in results.items()}
    card.thresholds = f"{thresholds_file.name}, calibrated on CFP-FP impostor pairs"
    card.data = training_data(recipe, summary) | {
        "benchmark": f"CFP ({sources.cfp})"
        + (f", LFW ({sources.lfw_pairs.parent})" if sources.lfw_pairs else "")
        + ", never trained on"
        + (
            f"; lfw_no_overlap leaves out the LFW people listed in {sources.lfw_exclude}" if sources.lfw_exclude else ""
        ),
    }
    # the revision that trained it, where the checkpoint kept one (offline runs do)
    card.hardware, card.code_revision = (
        checkpoint.get("hardware", "unknown"),
        checkpoint.get("code_revision") or code_revision(),
    )
    card.training_minutes = training_minutes if training_minutes is not None else checkpoint.get("training_minutes")
    card.limitations = (
        "trained on a few tens of thousands of faces (CelebA, and UTKFace where listed): compare CFP-FP "
        "TAR@FAR with your own needs before trusting `verified`; no fairness audit has been run"
    )
    card.reproduce = reproduce_command(out, sources, report, calibration)
    card.write(out)
    print(f"{out}: {card.size_bytes / 2**20:.1f} MiB, sha256 {card.sha256}, parity {parity:.2e}")
    return card, results


def training_data(recipe: dict, summary: dict) -> dict[str, str]:
    """The card's account of the training data, for either recipe: the online one (margin loss on
    labelled identities + the teacher in the loop) or the offline one (`offline.py`: a teacher cache)."""
    if "cache" in recipe:
        return {
            "faces": f"{', '.join(summary['sources'])}: {summary['faces']} faces, "
            f"{summary['training_faces']} trained on; the last {recipe['val_identities']} CelebA identities "
            "with two or more faces held out for model selection",
            "distillation": f"teacher {summary['teacher']} (sha256 {summary['teacher_sha256']}), its descriptors "
            f"cached for {summary['views']} views of every face (the crop, its mirror, random poses); no identity "
            f"labels used; cosine + relational loss (weight {recipe['relation_weight']}), student-side degradations "
            "and occlusion "
            f"({recipe['occlusion']})",
        }
    return {
        "labelled": f"{recipe['data']}: {summary}; the last {recipe['val_identities']} identities with two or more "
        f"faces held out for model selection; margin loss on identities with >= {recipe['min_faces']} faces",
        "distillation": f"teacher {recipe['teacher']} ({recipe['teacher_weights'] or 'face_recognition_models'}) "
        f"on the fly, weight {recipe['distill_weight']}, every training face",
    }


def pipeline(own: argparse.Namespace, base: FaceConfig) -> None:
    """Train the StRA model and its same-recipe baseline (`own.models`, each with the `base` recipe),
    then ship both into one folder: <out>/<model>/ (checkpoints, log), <out>/<model>.onnx + .card.json,
    <out>/thresholds.json, <out>/bench/<model>/ (results.json, roc.png), <out>/summary.md."""
    own.out.mkdir(parents=True, exist_ok=True)
    sources = PairSources.from_roots(own.cfp, own.lfw, own.lfw_exclude if own.lfw_exclude.exists() else None)
    for name in own.models:
        started = time.perf_counter()
        config = dataclasses.replace(base, model=name, out=str(own.out / name))
        best = train(config)
        train_minutes = round((time.perf_counter() - started) / 60, 2)
        ship(
            best,
            own.out / f"{name}.onnx",
            sources,
            own.out / "bench" / name,
            own.out / "thresholds.json",
            fp16=not own.fp32,
            training_minutes=train_minutes,
        )
    write_summary(own.out, base)


def write_summary(out: Path, recipe: FaceConfig) -> None:
    """summary.md over every model carded in `out` (so models trained in separate calls meet in one table)."""
    shared = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in ("model", "out")}
    lines = ["# Face students", "", f"Recipe: `{json.dumps(shared)}`", ""]
    for card_file in sorted(out.glob(f"*{CARD_SUFFIX}")):
        card = ModelCard.read(card_file)
        name = card.model["name"]
        results = json.loads((out / "bench" / name / "results.json").read_text())
        lines.append(f"## {name} ({card.training_minutes or '?'} min training, {card.hardware}, {card.code_revision})")
        lines.append(table_row(name, {k: VerificationResult(**v) for k, v in results.items()}))
        lines.append("TAR@FAR: " + "; ".join(f"{k} {v['tar_at_far']}" for k, v in results.items()))
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
