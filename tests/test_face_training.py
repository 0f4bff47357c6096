"""Face training: the compact face pack, views shared by student and teacher, identity split, and the
end-to-end pipeline (train, export, benchmark, calibrate, cards) at smoke size."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import ROOT, SHARED_DATA, need
from stra_face.training.eval.embedders import load_rgb
from stra_face.training.eval.verification import read_lfw_pairs, without_people
from stra_face.training.face.data import (
    TEACHER_CHIP,
    FaceAugment,
    FaceDataset,
    FaceFolder,
    FacePack,
    PackedImage,
    open_faces,
    pack_faces,
    render,
    teacher_chip_matrix,
)
from stra_face.training.face.trainer import split_identities

CELEBA299 = SHARED_DATA / "celeba299" / "aligned112"
CELEBA10K = SHARED_DATA / "celeba10k" / "aligned112"


def face_tree(root, people: dict[str, int], seed: int = 0):
    """root/<person>/<person>_<nnnn>.jpg: smooth random colour faces, 112x112."""
    rng = np.random.default_rng(seed)
    for person, count in people.items():
        (root / person).mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            image = cv2.resize(
                rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC
            )
            cv2.imwrite(str(root / person / f"{person}_{number:04d}.jpg"), image)
    return root


def test_pack_merges_sources_by_identity_and_reads_back_the_faces(tmp_path):
    first = face_tree(tmp_path / "a", {"Ann": 2, "Bob": 1})
    second = face_tree(tmp_path / "b", {"Bob": 2, "Cid": 3}, seed=1)  # Bob_0001 in both: the first source's copy wins
    summary = pack_faces([first, second], tmp_path / "faces.npz", quality=95)
    assert summary["faces"] == 2 + 2 + 3 and summary["identities"] == 3 and summary["identities_with_2_or_more"] == 3
    pack = open_faces(tmp_path / "faces.npz")
    assert isinstance(pack, FacePack) and pack.identities == ["Ann", "Bob", "Cid"]
    assert pack.paths[pack.index_of("Bob/Bob_0001.jpg")] == "Bob/Bob_0001.jpg"
    assert np.bincount(pack.labels).tolist() == [2, 2, 3]
    original = cv2.cvtColor(cv2.imread(str(first / "Bob" / "Bob_0001.jpg")), cv2.COLOR_BGR2RGB)
    assert np.abs(pack.image(pack.index_of("Bob/Bob_0001.jpg")).astype(int) - original).mean() < 2
    folder = open_faces(first)
    assert isinstance(folder, FaceFolder) and folder.paths == [
        "Ann/Ann_0001.jpg",
        "Ann/Ann_0002.jpg",
        "Bob/Bob_0001.jpg",
    ]
    with pytest.raises(KeyError):
        pack.index_of("Dan/Dan_0001.jpg")


def test_smaller_packs_read_back_at_112(tmp_path):
    pack_faces([face_tree(tmp_path / "a", {"Ann": 2})], tmp_path / "small.npz", quality=90, size=64)
    pack = FacePack(tmp_path / "small.npz")
    assert pack.size == 64 and pack.image(0).shape == (112, 112, 3)


def test_real_celeba_sources_pack_with_their_overlap(tmp_path):
    need(CELEBA10K)
    shared = sorted(set(p.name for p in CELEBA299.iterdir()) & set(p.name for p in CELEBA10K.iterdir()))[:3]
    subsets = []
    for source in (CELEBA299, CELEBA10K):
        subset = tmp_path / source.parent.name
        for identity in shared:
            (subset / identity).mkdir(parents=True)
            for image in sorted((source / identity).iterdir())[:3]:
                (subset / identity / image.name).symlink_to(image)
        subsets.append(subset)
    files = {f"{p.parent.name}/{p.name}" for s in subsets for p in s.rglob("*.jpg")}
    summary = pack_faces(subsets, tmp_path / "celeba.npz")
    assert summary["identities"] == 3 and summary["faces"] == len(files)


def test_benchmark_reads_lfw_from_a_pack_and_leaves_out_listed_people(tmp_path):
    root = face_tree(tmp_path / "lfw" / "aligned112", {"Ann": 2, "Bob": 2, "Cid": 1})
    (tmp_path / "lfw" / "pairs.txt").write_text("2\t1\nAnn\t1\t2\nAnn\t1\tCid\t1\nBob\t1\t2\nBob\t2\tCid\t1\n")
    pack_faces([root], tmp_path / "lfw" / "aligned112.npz")
    from_folder = read_lfw_pairs(tmp_path / "lfw" / "pairs.txt", root)
    root.rename(tmp_path / "lfw" / "moved")  # now only the pack of the same name is there
    from_pack = read_lfw_pairs(tmp_path / "lfw" / "pairs.txt", root)
    assert all(isinstance(image, PackedImage) for image in from_pack.images)
    assert np.array_equal(from_pack.pairs, from_folder.pairs) and np.array_equal(from_pack.issame, from_folder.issame)
    assert load_rgb(from_pack.images[0]).shape == (112, 112, 3)
    unseen = without_people(from_pack, {"Ann"}, "lfw_no_overlap")
    assert (
        unseen.name == "lfw_no_overlap" and unseen.issame.tolist() == [True, False] and unseen.folds.tolist() == [1, 1]
    )


def test_teacher_chip_shows_the_students_view():
    """Rendering the source straight into the chip through the view's geometry equals rendering the
    student's 112x112 view into the chip, wherever the student's view holds pixels."""
    rng = np.random.default_rng(0)
    face = cv2.resize(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    augment = FaceAugment(colour=0, gray=0, downscale=0, blur=0, jpeg=0)
    chip = np.vstack([teacher_chip_matrix(), [0, 0, 1]])
    for _ in range(5):
        geometry = augment.geometry(rng)
        direct = render(face, chip @ geometry, TEACHER_CHIP).astype(int)
        via_student = render(render(face, geometry, 112), chip, TEACHER_CHIP).astype(int)
        inside = render(np.full((112, 112, 3), 255, np.uint8), chip, TEACHER_CHIP)[..., 0] == 255
        inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5))).astype(bool) & (
            render(np.full((112, 112, 3), 255, np.uint8), chip @ geometry, TEACHER_CHIP)[..., 0] == 255
        )
        assert inside.mean() > 0.4 and np.abs(direct - via_student)[inside].mean() < 3


def test_dataset_degrades_the_students_view_only():
    rng = np.random.default_rng(1)
    faces = np.stack([cv2.resize(rng.integers(0, 256, (14, 14, 3), dtype=np.uint8), (112, 112)) for _ in range(2)])

    class Faces:
        def image(self, index):
            return faces[index]

    sharp = FaceAugment(flip=0, rotate_degrees=0, scale=(1, 1), shift=0, colour=0, gray=0, downscale=0, blur=0, jpeg=0)
    blurred = FaceAugment(
        flip=0,
        rotate_degrees=0,
        scale=(1, 1),
        shift=0,
        colour=0,
        gray=0,
        downscale=1,
        downscale_range=(0.2, 0.2),
        blur=0,
        jpeg=0,
    )
    student_sharp, label, chip_sharp = FaceDataset(Faces(), np.arange(2), np.array([0, -1]), sharp)[1]
    student_blurred, _, chip_blurred = FaceDataset(Faces(), np.arange(2), np.array([0, -1]), blurred)[1]
    assert label == -1 and chip_sharp.shape == (TEACHER_CHIP, TEACHER_CHIP, 3)
    assert (student_sharp - student_blurred).abs().mean() > 0.02  # the student's view lost detail
    assert np.array_equal(chip_sharp.numpy(), chip_blurred.numpy())  # the teacher's did not
    degraded = FaceDataset(Faces(), np.arange(2), np.array([0, -1]), blurred, teacher_sees_degraded=True)[1][2]
    assert not np.array_equal(degraded.numpy(), chip_sharp.numpy())


def test_identity_split_holds_out_whole_people_and_labels_only_repeated_ones():
    labels = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4, 5, 5])
    train, classes, validation = split_identities(labels, min_faces=2, val_identities=2)
    assert sorted(set(labels[validation])) == [4, 5]  # the last two identities with two or more faces
    assert not set(labels[train]) & {4, 5}
    assert dict(zip(labels[train].tolist(), classes.tolist())) == {0: 0, 1: -1, 2: 1, 3: -1}


def make_cfp(root, people: list[str]):
    """A CFP-shaped release of real images: 10 folds of one same and one different FF/FP pair."""
    source = need(SHARED_DATA / "cfp")
    frontal, profile = [], []
    for person in people:
        for pose, files, count in (("frontal", frontal, 2), ("profile", profile, 1)):
            for number in range(1, count + 1):
                target = root / "aligned112" / person / pose / f"{number:02d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source / "aligned112" / person / pose / f"{number:02d}.jpg")
                files.append(f"../Data/Images/{person}/{pose}/{number:02d}.jpg")
    (root / "Protocol").mkdir(parents=True)
    (root / "Protocol" / "Pair_list_F.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(frontal)))
    (root / "Protocol" / "Pair_list_P.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(profile)))
    for protocol, second in (("FF", 2), ("FP", 1)):
        for fold in range(10):
            person = fold % len(people)
            folder = root / "Protocol" / "Split" / protocol / f"{fold + 1:02d}"
            folder.mkdir(parents=True)
            same = (2 * person + 1, 2 * person + second) if protocol == "FF" else (2 * person + 1, person + 1)
            (folder / "same.txt").write_text(f"{same[0]},{same[1]}\n")
            other = (person + 1) % len(people)
            (folder / "diff.txt").write_text(f"{2 * person + 1},{(2 * other + 2) if protocol == 'FF' else other + 1}\n")
    return root


def make_lfw(root):
    """An LFW-shaped folder of real images: pairs.txt with 10 folds of one same and one different pair."""
    source = need(SHARED_DATA / "lfw")
    rows = [line.split() for line in (source / "pairs.txt").read_text().splitlines()[1:]]
    same, diff = [r for r in rows if len(r) == 3][:10], [r for r in rows if len(r) == 4][:10]
    lines = ["10\t1"]
    for fold in range(10):
        lines += ["\t".join(same[fold]), "\t".join(diff[fold])]
        for name, number in (
            (same[fold][0], same[fold][1]),
            (same[fold][0], same[fold][2]),
            (diff[fold][0], diff[fold][1]),
            (diff[fold][2], diff[fold][3]),
        ):
            target = root / "aligned112" / name / f"{name}_{int(number):04d}.jpg"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source / "aligned112" / name / target.name)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root, same[0][0]


@pytest.mark.slow
def test_pipeline_trains_benchmarks_exports_and_cards_both_models(tmp_path):
    """The GPU command at smoke size on the CPU: two small backbones stand in for the ResNet50 pair,
    an untrained dlib ResNet for the teacher (the plumbing does not depend on its weights)."""
    import subprocess
    import sys

    subset = tmp_path / "faces"
    for identity in sorted(p.name for p in need(CELEBA299).iterdir())[:8]:
        (subset / identity).mkdir(parents=True)
        for image in sorted((CELEBA299 / identity).iterdir())[:4]:
            (subset / identity / image.name).symlink_to(image)
    pack_faces([subset], tmp_path / "faces.npz")
    lfw, seen_person = make_lfw(tmp_path / "lfw")
    (tmp_path / "seen.txt").write_text(seen_person + "\n")
    cfp = make_cfp(tmp_path / "cfp", sorted(p.name for p in (SHARED_DATA / "cfp" / "aligned112").iterdir())[:5])
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "stra_face.training.face",
        "pipeline",
        "--out",
        str(out),
        "--models",
        "mobilenetv2_100_stra",
        "mobilenetv2_100",
        "--cfp",
        str(cfp),
        "--lfw",
        str(lfw),
        "--lfw-exclude",
        str(tmp_path / "seen.txt"),
        "--data",
        str(tmp_path / "faces.npz"),
        "--teacher",
        "random",
        "--epochs",
        "1",
        "--max-steps",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--val-identities",
        "2",
        "--scale",
        "16",
    ]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1200
    )  # ~35 s of CPU time per model; the limit allows a loaded machine
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    thresholds = json.loads((out / "thresholds.json").read_text())
    for model in ("mobilenetv2_100_stra", "mobilenetv2_100"):
        card = json.loads((out / f"{model}.card.json").read_text())
        assert card["sha256"] in thresholds and card["precision"] == "fp16" and (out / f"{model}.onnx").exists()
        assert set(card["metrics"]) == {"lfw", "lfw_no_overlap", "cfp_ff", "cfp_fp"}
        assert card["metrics"]["lfw"]["pairs"] == 20 and card["metrics"]["lfw_no_overlap"]["pairs"] < 20
        assert card["recipe"]["teacher"] == "random" and card["model"]["name"] == model and "CPU" in card["hardware"]
        assert (out / "bench" / model / "results.json").exists() and (out / model / "log.csv").exists()
    summary = (out / "summary.md").read_text()
    assert "mobilenetv2_100_stra" in summary and "| LFW (people not in training) |" in summary
