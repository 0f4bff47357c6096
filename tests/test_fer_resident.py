"""FER training's device-resident path: batch augmentation, the resident loader, and the one-command run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stra_face.training.fer.data import FerData, ResidentLoader, augment_batch, read_csv, write_csv


def test_augment_batch_shape_range_and_variety():
    torch.manual_seed(0)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 48, 48), dtype=np.uint8))
    out = augment_batch(images)
    assert out.shape == (64, 1, 48, 48) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    again = augment_batch(images[:1].expand(16, 48, 48))
    assert len({tuple(view.flatten()[:200].tolist()) for view in again}) == 16  # every copy augmented differently


def test_augment_batch_keeps_a_flat_image_flat_except_one_erased_box():
    # Geometry with border padding must not invent edges; brightness/contrast is one affine map per
    # image; erasing blacks out at most one 8-16 px box.
    torch.manual_seed(1)
    out = augment_batch(torch.full((200, 48, 48), 100, dtype=torch.uint8))[:, 0]
    erased_rows = 0
    for view in out:
        erased = view == -1
        values = view[~erased]
        assert values.max() - values.min() < 1e-4
        if erased.any():
            rows, cols = erased.nonzero(as_tuple=True)
            height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
            assert 8 <= height <= 16 and 8 <= width <= 16 and erased.sum() == height * width
            erased_rows += 1
    assert 70 < erased_rows < 130  # p = 0.5


def test_augment_batch_flips_half_the_time_and_keeps_the_content_in_place():
    torch.manual_seed(2)
    image = torch.zeros(48, 48, dtype=torch.uint8)
    image[:, :20] = 255  # bright left band
    out = augment_batch(image.expand(400, 48, 48))[:, 0]
    left, right = out[:, :, :16].mean((1, 2)), out[:, :, -16:].mean((1, 2))
    assert ((left - right).abs() > 0.5).float().mean() > 0.95  # crops/rotations/shifts keep the band on one side
    assert 0.4 < (left < right).float().mean() < 0.6  # ... and the flip moves it half the time


def test_resident_loader_epochs_are_seeded_permutations_and_ranks_are_disjoint():
    data = FerData(np.zeros((50, 48, 48), np.uint8), np.arange(50, dtype=np.int64), np.full(50, "Training"))
    loader = ResidentLoader(data, batch_size=8, device="cpu", seed=3)
    labels = torch.cat([batch_labels for _, batch_labels in loader])
    assert len(loader) == 6 and len(labels) == 48 and len(set(labels.tolist())) == 48  # drop-last, no repeats
    assert torch.equal(labels, torch.cat([y for _, y in loader]))  # same epoch, same order
    loader.set_epoch(1)
    assert not torch.equal(labels, torch.cat([y for _, y in loader]))
    ranks = [ResidentLoader(data, 4, "cpu", seed=3, rank=rank, world_size=2) for rank in (0, 1)]
    seen = [set(torch.cat([y for _, y in rank]).tolist()) for rank in ranks]
    assert len(seen[0]) == len(seen[1]) == 24 and not seen[0] & seen[1]


def synthetic_fer(path, per_split: int = 24):
    """A class-dependent synthetic FER2013 csv: every split, every class (no real data needed)."""
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(7), per_split * 3 // 7 + 1)[: per_split * 3]
    images = (rng.integers(0, 60, (len(labels), 48, 48)) + labels[:, None, None] * 25).astype(np.uint8)
    usage = np.repeat(["Training", "PublicTest", "PrivateTest"], per_split)
    write_csv(FerData(images, labels.astype(np.int64), usage), path)
    return path


def synthetic_votes(path, labels: np.ndarray) -> None:
    """FER+ votes for `synthetic_fer`: 8 for the image's class, 2 for the next; every 4th image unknown."""
    from stra_face.training.fer import ferplus

    columns = np.array(
        [
            ferplus.FERPLUS_COLUMNS.index(name)
            for name in ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
        ]
    )
    votes = np.zeros((len(labels), 10), np.uint8)
    votes[np.arange(len(labels)), columns[labels]] = 8
    votes[np.arange(len(labels)), columns[(labels + 1) % 7]] = 2
    votes[::4] = 0
    votes[::4, ferplus.FERPLUS_COLUMNS.index("unknown")] = 10
    ferplus.write_votes(ferplus.FerPlusVotes(votes, np.ones(len(labels), bool)), path)


@pytest.mark.slow
def test_gpu_run_smoke_trains_both_models_evaluates_and_ships(tmp_path):
    import subprocess
    import tarfile

    from stra_face.training.fer.cli import gpu_run
    from stra_face.training.fer.trainer import load_checkpoint_model

    data = synthetic_fer(tmp_path / "fer2013.csv")
    synthetic_votes(tmp_path / "ferplus_votes.npz", read_csv(data).labels)
    out, back = tmp_path / "run", tmp_path / "OUT"
    # The CPU recipe's small pair (MobileNetV2-StRA and MobileNetV2) runs the same code as the GPU one,
    # here on FER+ vote distributions (--labels fer2013 ferplus would train both), shipped by FER+ PublicTest.
    summary = gpu_run(
        [
            "--smoke",
            "--config",
            "stra_face/training/configs/fer_cpu_stra.toml",
            "--baseline",
            "mobilenetv2_100",
            "--labels",
            "ferplus",
            "--ship-on",
            "ferplus",
            "--data",
            str(data),
            "--out",
            str(out),
            "--bring-back",
            str(back),
            "--",
            "--augment-on",
            "device",
        ]
    )
    assert (
        set(summary["runs"]) == {"mobilenetv2_100_stra_ferplus_seed0", "mobilenetv2_100_ferplus_seed0"}
        and summary["shipped"] == "mobilenetv2_100_stra_ferplus_seed0"
    )
    for run in summary["runs"].values():
        assert set(run["eval"]) == {
            f"{b}{s}/{t}"
            for b in ("", "ferplus/")
            for s in ("PublicTest", "PrivateTest")
            for t in ("none", "flip", "tencrop")
        }
        assert all(0 <= value <= 1 for value in run["eval"].values())
    assert json.loads((out / "mobilenetv2_100_ferplus_seed0" / "config.json").read_text())["labels"] == "ferplus"
    card = json.loads((out / "expression.card.json").read_text())
    assert (
        card["precision"] == "fp16"
        and card["parity_max_abs_error"] < 0.1
        and "trained_on" in card
        and card["code_revision"]
    )
    assert (
        card["model"]["name"] == "mobilenetv2_100_stra"
        and "PrivateTest/none" in card["metrics"]
        and "PrivateTest/none" in card["ferplus_metrics"]
    )
    assert (
        card["selected_run"] == summary["shipped"] and card["ferplus_metrics"]["PrivateTest/none"]["images"] == 18
    )  # 24 less every 4th (unknown)
    assert (out / "summary.md").read_text().count("| mobilenetv2") == 2 and (out / "curves.png").stat().st_size > 1000
    # what comes back from a device lease: at most 8 files of at most 16 MiB, and they rebuild the model
    returned = [path for path in back.rglob("*") if path.is_file()]
    assert len(returned) <= 8 and all(path.stat().st_size <= 16 * 2**20 for path in returned)
    with tarfile.open(back / "report.tar.gz") as archive:
        assert {"run/summary.md", "run/expression.card.json", "run/mobilenetv2_100_ferplus_seed0/log.csv"} <= set(
            archive.getnames()
        )
    subprocess.run(["sh", str(back / "JOIN.sh")], check=True, capture_output=True)
    model, checkpoint = load_checkpoint_model(back / "mobilenetv2_100_stra_fp16.pt")  # the shipped run's
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 7) and checkpoint["provenance"]["command"].startswith(
        "python -m stra_face.training.fer gpu-run"
    )


def test_split_into_parts_rejoins_byte_exact(tmp_path):
    import subprocess

    from stra_face.training.fer.gpu_run import split_into_parts

    payload = np.random.default_rng(0).integers(0, 256, 2500, dtype=np.uint8).tobytes()
    (tmp_path / "model.onnx").write_bytes(payload)
    pieces = split_into_parts(tmp_path / "model.onnx", tmp_path / "parts", part_bytes=1000)
    assert [p.stat().st_size for p in pieces] == [1000, 1000, 500]
    subprocess.run(["sh", str(tmp_path / "parts" / "JOIN.sh")], check=True, capture_output=True)
    assert (tmp_path / "parts" / "model.onnx").read_bytes() == payload
    (tmp_path / "parts" / "model.onnx.part01").write_bytes(b"x" * 1000)  # a damaged part fails the check
    assert subprocess.run(["sh", str(tmp_path / "parts" / "JOIN.sh")], capture_output=True).returncode != 0
