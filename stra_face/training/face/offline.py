"""The CPU route to a StRA face model: distil the teacher offline, from cached descriptors.

    python -m stra_face.training.face.offline cache ../shared/data/celeba299/aligned112 \
        ../shared/data/celeba10k/aligned112 \
        ../shared/data/utkface/utkface_aligned80.npz --views 4 --out runs/face/teacher_cache.npz
    python -m stra_face.training.face.offline train --cache runs/face/teacher_cache.npz --out runs/face/cpu_mnv2_stra
    python -m stra_face.training.face.offline train --cache runs/face/teacher_cache.npz --out runs/face/cpu_mnv2 \
        --model mobilenetv2_100

On a GPU the teacher runs inside the training loop (`stra_face.training.face.trainer`); on two CPU cores
it would cost as much as the student, so here it runs once: `cache` renders a fixed set of views of
every face (the crop itself, its mirror, and random poses: rotation, scale, shift and a horizontal
squeeze that stands in for a turned head), cuts the teacher's chip through the same geometry and
stores the teacher's descriptor per view. `train` renders the same views for the student, degrades
them only on the student's side (low resolution, blur, JPEG, occlusion, lighting) and regresses the
student's normalised embedding onto the teacher's centred, normalised descriptor (cosine loss) plus
the batch's similarity matrix (relational loss). It needs no identity labels, so UTKFace's unlabelled
faces count as much as CelebA's; CelebA's last `val_identities` identities with two or more faces are
held out for model selection. Black borders (where a source photo ended before the aligned frame
did) are inpainted before either network sees the face, so neither learns from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from stra_face import models
from stra_face.training import engine
from stra_face.training.face import data
from stra_face.training.face.data import (
    TEACHER_CHIP,
    FaceAugment,
    FaceFolder,
    FacePack,
    open_faces,
    teacher_chip_matrix,
)
from stra_face.training.face.margins import similarity_distillation
from stra_face.training.provenance import code_revision, hardware
from stra_face.vision.preprocess import FACE_SIZE, to_face_input

DEFAULT_TEACHER = Path(__file__).resolve().parents[2] / "assets" / "models" / "dlib_resnet_v1.onnx"


# --------------------------------------------------------------------------- faces and views


def render(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The view through a 3x3 matrix; outside the crop the face is mirrored, not black (a black frame
    is a cue no real photo has, and the teacher's chip reaches well beyond the 112 crop)."""
    return data.render(image, matrix, size, cv2.BORDER_REFLECT_101)


def fill_black_border(image: np.ndarray, level: int = 8) -> np.ndarray:
    """Inpaint the near-black regions that touch the frame's edge (the source photo ended there)."""
    dark = (image.max(axis=2) < level).astype(np.uint8)
    if not dark.any():
        return image
    count, components = cv2.connectedComponents(dark, connectivity=4)
    edge = np.unique(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]))
    mask = np.isin(components, edge[edge > 0]).astype(np.uint8)
    if not mask.any():
        return image
    return cv2.inpaint(image, cv2.dilate(mask, np.ones((3, 3), np.uint8)), 3, cv2.INPAINT_TELEA)


@dataclass(frozen=True)
class PoseViews:
    """Random geometry of the cached views beyond the crop itself and its mirror."""

    rotate_degrees: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.06
    squeeze: tuple[float, float] = (0.72, 1.0)  # horizontal foreshortening of a head turned away
    squeeze_centre: float = 0.12  # the axis of the squeeze moves off the face's centre by up to this fraction

    def matrix(self, rng: np.random.Generator) -> np.ndarray:
        centre = FACE_SIZE / 2
        angle = np.deg2rad(rng.uniform(-self.rotate_degrees, self.rotate_degrees))
        scale = rng.uniform(*self.scale)
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        axis = centre + rng.uniform(-self.squeeze_centre, self.squeeze_centre) * FACE_SIZE
        squeeze = np.array([[rng.uniform(*self.squeeze), 0, 0], [0, 1, 0], [0, 0, 1]])
        squeeze[0, 2] = axis * (1 - squeeze[0, 0])
        matrix = np.eye(3)
        matrix[:2, :2] = rotation
        matrix[:2, 2] = centre + rng.uniform(-self.shift, self.shift, 2) * FACE_SIZE - rotation @ [centre, centre]
        matrix = matrix @ squeeze
        if rng.random() < 0.5:
            matrix = matrix @ MIRROR
        return matrix


MIRROR = np.array([[-1, 0, FACE_SIZE - 1], [0, 1, 0], [0, 0, 1]], float)


def view_matrices(count: int, views: int, seed: int, poses: PoseViews = PoseViews()) -> np.ndarray:
    """(count, views, 3, 3): view 0 the crop, view 1 its mirror, the rest random poses (seeded)."""
    rng = np.random.default_rng(seed)
    matrices = np.empty((count, views, 3, 3))
    for face in range(count):
        matrices[face, 0] = np.eye(3)
        if views > 1:
            matrices[face, 1] = MIRROR
        for view in range(2, views):
            matrices[face, view] = poses.matrix(rng)
    return matrices


class FaceSources:
    """Several packs / identity folders as one indexed set; identities merge by folder name and a file
    present in two sources (same `<identity>/<file>`) is kept once, from the first."""

    def __init__(self, sources: list[str]):
        self.sources = [str(s) for s in sources]
        self._faces: list[FacePack | FaceFolder] = [open_faces(s) for s in self.sources]
        seen, entries = set(), []
        for number, faces in enumerate(self._faces):
            for index, relative in enumerate(faces.paths):
                if relative not in seen:
                    seen.add(relative)
                    entries.append((number, index, relative.split("/")[0]))
        self.source_of = np.array([e[0] for e in entries], np.int64)
        self.index_in_source = np.array([e[1] for e in entries], np.int64)
        self.identity = np.array([e[2] for e in entries])

    def __len__(self) -> int:
        return len(self.source_of)

    def image(self, face: int) -> np.ndarray:
        return fill_black_border(self._faces[self.source_of[face]].image(int(self.index_in_source[face])))


# --------------------------------------------------------------------------- the teacher's cache


def build_cache(
    sources: list[str],
    out: Path,
    views: int = 4,
    seed: int = 0,
    teacher: Path = DEFAULT_TEACHER,
    threads: int = 2,
    batch_size: int = 64,
    limit: int = 0,
) -> dict:
    """Teacher descriptors of every view of every face -> one .npz (see the module docstring)."""
    from tqdm import tqdm

    from stra_face.vision.inference import EmbeddingModel

    faces = FaceSources(sources)
    count = min(len(faces), limit) if limit else len(faces)
    matrices = view_matrices(count, views, seed)
    model = EmbeddingModel(teacher, ["CPUExecutionProvider"], threads)
    if model.input_kind.size != TEACHER_CHIP:
        raise ValueError(
            f"{teacher.name} reads {model.input_kind.name} faces; the cache cuts dlib's {TEACHER_CHIP}px chip"
        )
    chip = np.vstack([teacher_chip_matrix(), [0, 0, 1]])
    descriptors = np.empty((count, views, model.dim), np.float16)
    for start in tqdm(range(0, count, batch_size), desc="teacher", unit="batch"):
        stop = min(count, start + batch_size)
        chips = np.stack(
            [
                render(faces.image(face), chip @ matrices[face, view], TEACHER_CHIP)
                for face in range(start, stop)
                for view in range(views)
            ]
        )
        descriptors[start:stop] = model.embed(chips).reshape(stop - start, views, -1)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        sources=np.array(faces.sources),
        source_of=faces.source_of[:count],
        index_in_source=faces.index_in_source[:count],
        identity=faces.identity[:count],
        matrices=matrices.astype(np.float32),
        descriptors=descriptors,
        teacher=np.array(teacher.name),
        teacher_sha256=np.array(model.sha256),
        seed=np.int64(seed),
    )
    return {"faces": count, "views": views, "teacher": teacher.name, "bytes": out.stat().st_size}


# --------------------------------------------------------------------------- the student


@dataclass
class OfflineConfig:
    cache: str = "runs/face/teacher_cache.npz"
    out: str = "runs/face/cpu_mnv2_stra"
    model: str = "mobilenetv2_100_stra"
    model_kwargs: dict = field(default_factory=dict)
    embedding_dim: int = 128
    resize_input: int = 80  # the network's side inside the graph (it is fed the 112 crop)
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.002  # AdamW, for a batch of 64 (scaled linearly)
    weight_decay: float = 0.05
    warmup_epochs: float = 0.3
    relation_weight: float = 10.0
    occlusion: float = 0.25  # probability of a random occluding box on the student's view
    augment: dict = field(default_factory=dict)  # FaceAugment fields (student-side degradations)
    val_identities: int = 20
    seed: int = 0
    threads: int = 2
    workers: int = 1
    max_steps: int = 0  # per epoch; smoke runs
    limit: int = 0  # use only the first N cached faces; smoke runs


def occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A box of 15-40% of the side, flat grey or noise: hands, microphones, sunglasses."""
    side = image.shape[0]
    h, w = (rng.uniform(0.15, 0.4, 2) * side).astype(int)
    y, x = rng.integers(0, side - h), rng.integers(0, side - w)
    image = image.copy()
    image[y : y + h, x : x + w] = (
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if rng.random() < 0.5 else int(rng.integers(0, 256))
    )
    return image


class CachedViews(Dataset):
    """(student input (3,112,112) in [-1, 1], the teacher's centred unit descriptor of the same view).

    `faces` holds every face decoded and border-filled once (N, 112, 112, 3): filling UTKFace's borders
    costs ~5 ms a face, which a loader worker sharing two cores with the training step cannot afford
    on every visit (the step slowed threefold). Forked workers share the array without copying it."""

    def __init__(
        self,
        faces: np.ndarray,
        matrices: np.ndarray,
        targets: np.ndarray,
        indices: np.ndarray,
        augment: FaceAugment | None,
        occlusion: float,
    ):
        self.faces, self.matrices, self.targets, self.indices = faces, matrices, targets, indices
        self.augment, self.occlusion = augment, occlusion

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int):
        face = int(self.indices[item])
        rng = np.random.default_rng(np.random.randint(2**31))
        view = int(rng.integers(self.matrices.shape[1])) if self.augment is not None else 0
        image = render(self.faces[face], self.matrices[face, view].astype(np.float64), FACE_SIZE)
        if self.augment is not None:
            gain, bias, _ = self.augment.photometric(rng)
            image = self.augment.degrade(FaceAugment.apply_colour(image, gain, bias, False), rng)
            if rng.random() < self.occlusion:
                image = occlude(image, rng)
        tensor = torch.from_numpy(to_face_input(np.ascontiguousarray(image)[None])[0])
        return tensor, torch.from_numpy(self.targets[face, view])


def centred_targets(descriptors: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors minus their mean over the training faces' views, re-normalised: the teacher's
    cosines spread over [-1, 1] instead of crowding near 0.9, which is what the student should match."""
    mean = descriptors[train].astype(np.float64).reshape(-1, descriptors.shape[-1]).mean(axis=0)
    centred = descriptors.astype(np.float32) - mean.astype(np.float32)
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True).clip(min=1e-6), mean.astype(np.float32)


def held_out(identity: np.ndarray, count: int) -> np.ndarray:
    """Faces of the last `count` identities (sorted by name) with two or more faces: model selection only."""
    names, inverse, counts = np.unique(identity, return_inverse=True, return_counts=True)
    paired = np.flatnonzero(counts >= 2)
    chosen = set(paired[len(paired) - count :].tolist()) if count else set()
    return np.array([label in chosen for label in inverse], bool)


def distillation_loss(student: torch.Tensor, target: torch.Tensor, relation_weight: float) -> torch.Tensor:
    cosine = F.cosine_similarity(student.float(), target, dim=1)
    return (1 - cosine).mean() + relation_weight * similarity_distillation(student, target)


def train(config: OfflineConfig) -> Path:
    from tqdm import tqdm

    from stra_face.training.eval.verification import evaluate_pairs
    from stra_face.training.face.trainer import embed_faces, validation_pairs

    torch.set_num_threads(config.threads)
    engine.seed_everything(config.seed)
    cache = np.load(config.cache)
    faces = FaceSources(cache["sources"].tolist())
    count = len(cache["descriptors"]) if not config.limit else min(config.limit, len(cache["descriptors"]))
    identity = faces.identity[:count]
    validation_mask = held_out(identity, config.val_identities)
    train_indices, val_indices = np.flatnonzero(~validation_mask), np.flatnonzero(validation_mask)
    targets, teacher_mean = centred_targets(cache["descriptors"][:count], train_indices)
    matrices = cache["matrices"][:count]
    augment = FaceAugment(**config.augment)
    cv2.setNumThreads(1)  # the loader's worker is one process on one core
    images = np.stack([faces.image(i) for i in tqdm(range(count), desc="decode", unit="face", mininterval=10)])
    dataset = CachedViews(images, matrices, targets, train_indices, augment, config.occlusion)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        worker_init_fn=engine.worker_seed,
        generator=torch.Generator().manual_seed(config.seed),
    )
    validation, val_faces = None, None
    if len(val_indices):
        val_faces = np.stack([render(images[i], np.eye(3), FACE_SIZE) for i in val_indices])
        _, val_labels = np.unique(identity[val_indices], return_inverse=True)
        validation = validation_pairs(val_labels, config.seed)

    kwargs = {"embedding_dim": config.embedding_dim, "resize_input": config.resize_input, **config.model_kwargs}
    model = models.create_model(config.model, **kwargs)
    optimizer = engine.build_optimizer([model], "adamw", config.lr * config.batch_size / 64, config.weight_decay)
    steps_per_epoch = min(len(loader), config.max_steps) if config.max_steps else len(loader)
    scheduler = engine.warmup_cosine(
        optimizer, config.epochs * steps_per_epoch, max(1, int(config.warmup_epochs * steps_per_epoch))
    )
    out = Path(config.out)
    runtime = engine.setup_runtime("cpu")
    checkpointer, log = engine.Checkpointer(out, runtime), engine.CSVLog(out / "log.csv", runtime)
    start_epoch, best, minutes = 0, -1.0, 0.0
    if (state := checkpointer.load_last()) is not None:  # the same command resumes
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, minutes = state["epoch"] + 1, state["best_metric"], state.get("training_minutes", 0.0)
        print(f"resumed from {checkpointer.last} at epoch {start_epoch}")
    engine.save_config(config, out / "config.json")
    summary = {
        "faces": count,
        "training_faces": int(len(train_indices)),
        "validation_faces": int(len(val_indices)),
        "views": int(matrices.shape[1]),
        "sources": cache["sources"].tolist(),
        "teacher": str(cache["teacher"]),
        "teacher_sha256": str(cache["teacher_sha256"]),
    }
    for epoch in range(start_epoch, config.epochs):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        progress = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch}", unit="batch", mininterval=10)
        for step, (inputs, target) in enumerate(progress):
            if step >= steps_per_epoch:
                break
            loss = distillation_loss(model(inputs), target, config.relation_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            total, seen = total + loss.item() * len(inputs), seen + len(inputs)
            progress.set_postfix(loss=f"{total / seen:.4f}")
        rate = seen / (time.perf_counter() - started)
        val_accuracy, val_cosine = float("nan"), float("nan")
        if validation is not None:
            plain, mirrored = embed_faces(model, torch.device("cpu"), val_faces)
            val_accuracy = evaluate_pairs(validation, plain, mirrored).accuracy_mean
            val_cosine = float(
                np.mean(np.sum(F.normalize(torch.from_numpy(plain)).numpy() * targets[val_indices, 0], axis=1))
            )
        minutes += (time.perf_counter() - started) / 60  # across resumes: the card's training time
        is_best = not np.isfinite(val_accuracy) or val_accuracy > best
        best = max(best, val_accuracy) if np.isfinite(val_accuracy) else best
        checkpointer.save(
            {
                "model": {"name": config.model, "kwargs": kwargs},
                "state_dict": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_metric": best,
                "val_accuracy": val_accuracy,
                "teacher_mean": torch.from_numpy(teacher_mean),
                "config": dataclasses.asdict(config),
                "data_summary": summary,
                "hardware": hardware(),
                "code_revision": code_revision(),
                "training_minutes": round(minutes, 1),
            },
            is_best,
        )
        row = {
            "epoch": epoch,
            "train_loss": round(total / max(seen, 1), 5),
            "val_verification_accuracy": round(val_accuracy, 5),
            "val_cosine_to_teacher": round(val_cosine, 5),
            "lr": scheduler.get_last_lr()[0],
            "images_per_second": round(rate, 1),
            "seconds": round(time.perf_counter() - started, 1),
        }
        log.write(row)
        print(json.dumps(row), flush=True)
    return checkpointer.best


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "train":
        print(train(engine.parse_config(OfflineConfig, argv[1:], "distil the teacher into a student from the cache")))
        return
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.face.offline", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train a student from the cache (options: ... train --help)")
    cache = commands.add_parser("cache", help="teacher descriptors of a fixed set of views of every face")
    cache.add_argument("sources", nargs="+", help="face packs (.npz) or <identity>/<face> folders")
    cache.add_argument("--out", type=Path, required=True)
    cache.add_argument("--views", type=int, default=4)
    cache.add_argument("--seed", type=int, default=0)
    cache.add_argument(
        "--teacher", type=Path, default=DEFAULT_TEACHER, help="the teacher's ONNX file (dlib's 150 px chip)"
    )
    cache.add_argument("--threads", type=int, default=2)
    cache.add_argument("--limit", type=int, default=0, help="only the first N faces (smoke runs)")
    args = parser.parse_args(argv)
    print(
        json.dumps(
            build_cache(args.sources, args.out, args.views, args.seed, args.teacher, args.threads, limit=args.limit)
        )
    )


if __name__ == "__main__":
    main()
