"""Training code: FER readers, margin heads, distillation, and smoke runs of both trainers (DDP included)."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SHARED_DATA, need
from stra_face.training.face.margins import ArcFace, CosFace, similarity_distillation
from stra_face.training.fer.data import SPLITS, FerData, load_fer2013, read_csv, tta_views, write_csv

FER_NPZ = SHARED_DATA / "fer2013" / "fer2013_jpg.npz"
README_COUNTS = {
    "Training": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "PublicTest": [467, 56, 496, 895, 653, 415, 607],
    "PrivateTest": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def fer() -> FerData:
    return load_fer2013(need(FER_NPZ))


def test_fer_compact_npz_has_the_official_split(fer):
    for split, counts in README_COUNTS.items():
        assert np.bincount(fer.split(split).labels).tolist() == counts
    assert fer.images.shape == (35887, 48, 48) and fer.images.dtype == np.uint8


def test_fer_kaggle_zip_layout_reads_the_same_images(fer, tmp_path):
    """The Kaggle image-folder zip users have, built here from the compact npz's own JPEG bytes."""
    import zipfile

    from stra_face.vision.preprocess import EXPRESSIONS

    archive = np.load(FER_NPZ)
    header, payload, offsets = archive["jpg_header"].tobytes(), archive["jpg_payload"], archive["jpg_offsets"]
    keep = np.concatenate([np.flatnonzero(fer.usage == split)[:30] for split in SPLITS])
    with zipfile.ZipFile(tmp_path / "fer2013.zip", "w") as handle:
        for index in keep:
            folder = "train" if fer.usage[index] == "Training" else "test"
            name = f"fer2013/{folder}/{EXPRESSIONS[fer.labels[index]]}/{fer.usage[index]}_{index}.jpg"
            handle.writestr(name, header + payload[offsets[index] : offsets[index + 1]].tobytes())
        handle.writestr("fer2013/README.txt", "not an image")
    from_zip = load_fer2013(tmp_path / "fer2013.zip")
    assert len(from_zip) == len(keep) and sorted(from_zip.usage.tolist()) == sorted(fer.usage[keep].tolist())
    by_pixels = {fer.images[i].tobytes(): (fer.labels[i], fer.usage[i]) for i in keep}
    for image, label, usage in zip(from_zip.images, from_zip.labels, from_zip.usage):
        assert by_pixels[image.tobytes()] == (label, usage)  # same decoded pixels, label and split


def test_fer_csv_round_trip(fer, tmp_path):
    keep = np.concatenate([np.flatnonzero(fer.usage == split)[:20] for split in SPLITS])
    sample = FerData(fer.images[keep], fer.labels[keep], fer.usage[keep])
    write_csv(sample, tmp_path / "fer2013.csv")
    with open(tmp_path / "fer2013.csv") as handle:
        assert next(csv.reader(handle)) == ["emotion", "pixels", "Usage"]
    again = load_fer2013(tmp_path / "fer2013.csv")
    assert np.array_equal(again.images, sample.images) and np.array_equal(again.labels, sample.labels)
    assert again.usage.tolist() == sample.usage.tolist()


def test_fer_csv_reader_rejects_bad_rows(tmp_path):
    (tmp_path / "bad.csv").write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_csv(tmp_path / "bad.csv")


def test_fer_image_folder_layout(fer, tmp_path):
    import cv2

    from stra_face.vision.preprocess import EXPRESSIONS

    for index in (0, 1, len(fer) - 1):
        folder = (
            tmp_path
            / "fer2013"
            / ("train" if fer.usage[index] == "Training" else "test")
            / EXPRESSIONS[fer.labels[index]]
        )
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{fer.usage[index]}_{index}.png"), fer.images[index])
    data = load_fer2013(tmp_path)
    assert len(data) == 3 and sorted(data.labels.tolist()) == sorted(fer.labels[[0, 1, len(fer) - 1]].tolist())


def test_tta_views():
    batch = torch.rand(2, 1, 48, 48)
    assert len(tta_views(batch, "flip")) == 2 and torch.equal(tta_views(batch, "flip")[1], batch.flip(-1))
    views = tta_views(batch, "tencrop")
    assert len(views) == 10 and all(v.shape == batch.shape for v in views)


def test_arcface_and_cosface_margins_on_the_target_logit_only():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(4, 8), torch.tensor([0, 2, -1, 1])
    arc, cos = ArcFace(8, 3, scale=10, margin=0.5), CosFace(8, 3, scale=10, margin=0.35)
    cos.weight.data = arc.weight.data.clone()
    plain = arc.cosine(embeddings).detach()
    arc_logits, cos_logits = arc(embeddings, labels), cos(embeddings, labels)
    for row, label in enumerate(labels.tolist()):
        for column in range(3):
            if column == label:
                theta = math.acos(plain[row, column])
                expected = (
                    math.cos(theta + 0.5)
                    if theta + 0.5 < math.pi
                    else plain[row, column] - math.sin(math.pi - 0.5) * 0.5
                )
                assert arc_logits[row, column].item() == pytest.approx(10 * expected, abs=1e-4)
                assert cos_logits[row, column].item() == pytest.approx(
                    10 * (plain[row, column].item() - 0.35), abs=1e-4
                )
            else:  # other classes and the unlabelled row: plain scaled cosine
                assert arc_logits[row, column].item() == pytest.approx(10 * plain[row, column].item(), abs=1e-5)


def test_similarity_distillation():
    teacher = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    rotation = torch.linalg.qr(torch.randn(4, 4))[0]
    assert similarity_distillation(teacher @ rotation, teacher).item() < 1e-10  # same geometry, other basis
    student = torch.randn(6, 16, requires_grad=True)
    loss = similarity_distillation(student, teacher)
    loss.backward()
    assert loss.item() > 0 and student.grad.abs().sum() > 0
    teacher_with_gaps = teacher.clone()
    teacher_with_gaps[1:] = float("nan")
    assert similarity_distillation(student, teacher_with_gaps).item() == 0


def run_module(*args: str, timeout: int = 600) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


FER_SMOKE = [
    "--model",
    "mobilenetv2_100",
    "--model-kwargs",
    '{"stem_stride": 2}',
    "--train-subset",
    "128",
    "--eval-subset",
    "64",
    "--batch-size",
    "16",
    "--workers",
    "0",
    "--device",
    "cpu",
]


@pytest.mark.slow
def test_fer_training_checkpoints_resumes_and_evaluates(tmp_path):
    data = str(need(FER_NPZ))
    out = tmp_path / "run"
    run_module("-m", "stra_face.training.fer", "train", "--data", data, "--out", str(out), "--epochs", "1", *FER_SMOKE)
    log = (out / "log.csv").read_text().splitlines()
    assert len(log) == 2 and (out / "best.pt").exists()
    stdout = run_module(
        "-m", "stra_face.training.fer", "train", "--data", data, "--out", str(out), "--epochs", "2", *FER_SMOKE
    )
    assert "resumed" in stdout and len((out / "log.csv").read_text().splitlines()) == 3
    report = run_module(
        "-m",
        "stra_face.training.fer",
        "eval",
        "--checkpoint",
        str(out / "last.pt"),
        "--data",
        data,
        "--splits",
        "PublicTest",
        "--tta",
        "none",
        "--plots",
        str(tmp_path / "plots"),
    )
    assert "PublicTest" in report and (tmp_path / "plots" / "confusion_PublicTest_none.png").exists()


@pytest.mark.slow
def test_fer_training_under_torchrun_with_two_cpu_processes(tmp_path):
    data = str(need(FER_NPZ))
    out = tmp_path / "ddp"
    run_module(
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "stra_face.training.fer",
        "train",
        "--data",
        data,
        "--out",
        str(out),
        "--epochs",
        "1",
        *FER_SMOKE,
    )
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 2  # one row per epoch, written by rank 0 only
    checkpoint = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert not any(key.startswith("module.") for key in checkpoint["state_dict"])  # saved unwrapped


def test_attention_maps_are_recorded_and_plotted(tmp_path):
    from stra_face import models
    from stra_face.training.mode_maps import coefficient_maps, plot_distribution, plot_faces

    model = models.create_model("resnet50_stra", num_classes=7, in_chans=1, stem_stride=2, last_stride=1).eval()
    images = torch.rand(5, 1, 48, 48) * 2 - 1
    maps = coefficient_maps(model, images, batch_size=2)
    assert maps.shape == (5, 8, 6, 6) and maps.min() >= 0 and maps.max() <= 1
    faces = ((images[:, 0].numpy() + 1) * 127.5).astype(np.uint8)
    plot_faces(faces[:3], maps[:3], tmp_path / "faces.png")
    plot_distribution(maps, faces.mean(0), tmp_path / "dist.png")
    assert (tmp_path / "faces.png").stat().st_size > 1000 and (tmp_path / "dist.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no mode attention"):
        coefficient_maps(models.create_model("resnet50", num_classes=7), torch.zeros(1, 3, 48, 48))


@pytest.mark.parametrize(
    "config_file", sorted((ROOT / "stra_face" / "training" / "configs").glob("*.toml")), ids=lambda path: path.name
)
def test_every_shipped_config_parses_and_names_a_registered_model(config_file):
    from stra_face import models
    from stra_face.training import engine
    from stra_face.training.face.trainer import FaceConfig
    from stra_face.training.fer.trainer import FerConfig

    config_cls = FaceConfig if config_file.name.startswith("face_") else FerConfig
    config = engine.parse_config(config_cls, ["--config", str(config_file)], "test")
    assert config.model in models.list_models()
    assert config.epochs > 0 and config.lr > 0


def test_fer_sample_is_seeded_and_spans_the_classes(fer):
    training = fer.split("Training")
    sample = training.sample(512, seed=3)
    assert len(sample) == 512 and np.array_equal(sample.labels, training.sample(512, seed=3).labels)
    assert len(np.unique(sample.labels)) == 7  # the first 512 files would all be "angry"
