"""The CPU route to a face student: teacher descriptors cached once, a student trained from them."""

from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CELEBA = SHARED / "celeba299" / "aligned112"


def test_black_border_is_filled_and_faces_are_left_alone():
    from stra_face.training.face.offline import fill_black_border

    rng = np.random.default_rng(0)
    face = rng.integers(60, 200, (112, 112, 3), dtype=np.uint8)
    assert fill_black_border(face) is face  # nothing dark at the edge: untouched
    bordered = face.copy()
    bordered[:, :20] = 0
    bordered[50:60, 50:60] = 0  # dark, but inside the face: not a border
    filled = fill_black_border(bordered)
    assert filled[:, :18].min() > 30
    assert (filled[52:58, 52:58] == 0).all()


def test_views_are_the_crop_its_mirror_and_seeded_poses():
    from stra_face.training.face.offline import MIRROR, view_matrices

    first, again = view_matrices(3, 4, seed=1), view_matrices(3, 4, seed=1)
    assert np.array_equal(first, again)
    assert np.allclose(first[:, 0], np.eye(3)) and np.allclose(first[:, 1], MIRROR)
    assert not np.allclose(first[0, 2], first[1, 2])


def test_distillation_loss_is_zero_only_when_the_student_matches():
    from stra_face.training.face.offline import distillation_loss

    target = torch.nn.functional.normalize(torch.randn(8, 128), dim=1)
    assert distillation_loss(target * 3.0, target, 10.0).item() == pytest.approx(0.0, abs=1e-5)
    assert distillation_loss(torch.randn(8, 128), target, 10.0).item() > 0.5


@pytest.mark.slow
def test_cache_then_train_a_student_and_resume(tmp_path):
    if not CELEBA.is_dir():
        pytest.skip(f"no CelebA faces at {CELEBA}")
    from stra_face.training import engine
    from stra_face.training.eval.embedders import load_checkpoint_model
    from stra_face.training.face.offline import OfflineConfig, build_cache, train

    cache = tmp_path / "cache.npz"
    summary = build_cache([str(CELEBA)], cache, views=3, limit=96)
    stored = np.load(cache)
    assert summary["faces"] == 96 and stored["descriptors"].shape == (96, 3, 128)
    unit = stored["descriptors"].astype(np.float32)
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    # the teacher sees the same face in every view: views agree far more than different faces do
    assert np.mean(np.sum(unit[:, 0] * unit[:, 1], axis=1)) > np.mean(unit[:48, 0] @ unit[48:, 0].T) + 0.05
    config = engine.parse_config(
        OfflineConfig,
        [
            "--cache",
            str(cache),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--max-steps",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--val-identities",
            "0",
            "--model",
            "mobilenetv2_100",
            "--resize-input",
            "64",
        ],
    )
    best = train(config)
    model, checkpoint = load_checkpoint_model(best)
    assert checkpoint["epoch"] == 1 and model(torch.zeros(1, 3, 112, 112)).shape == (1, 128)
    assert train(config) == best  # a finished run resumes to nothing more


def test_validation_pairs_stop_at_the_impostor_pairs_there_are():
    # three held-out people with 3, 6 and 23 faces: 271 genuine pairs but only 225 impostor pairs
    from stra_face.training.face.trainer import validation_pairs

    labels = np.repeat([0, 1, 2], [3, 6, 23])
    pairs = validation_pairs(labels, seed=0)
    assert pairs.issame.sum() == (~pairs.issame).sum() == 225


def test_cached_centroids_average_the_first_faces_of_each_identity(tmp_path):
    from stra_face.training.face.overlap import cached_centroids

    rng = np.random.default_rng(0)
    descriptors = rng.normal(size=(5, 2, 8)).astype(np.float16)
    identity = np.array(["b", "a", "b", "b", "utk_1"])  # a pack's unnamed face is an identity of its own
    np.savez(tmp_path / "cache.npz", descriptors=descriptors, identity=identity)
    names, vectors = cached_centroids(tmp_path / "cache.npz", per_identity=2)
    assert names == ["a", "b", "utk_1"]
    unit = descriptors[:, 0].astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    expected_b = unit[0] + unit[2]  # the first two of b's three faces, in cache order
    np.testing.assert_allclose(vectors[1], expected_b / np.linalg.norm(expected_b), atol=1e-6)
    np.testing.assert_allclose(vectors[0], unit[1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)


@pytest.mark.slow
def test_face_modes_command_draws_both_figures(tmp_path):
    import subprocess
    import sys

    from stra_face import models

    if not (SHARED / "cfp" / "aligned112").is_dir():
        pytest.skip(f"no CFP faces at {SHARED / 'cfp'}")
    kwargs = {"embedding_dim": 128, "resize_input": 64}
    model = models.create_model("mobilenetv2_100_stra", **kwargs)
    checkpoint = tmp_path / "student.pt"
    saved = {"model": {"name": "mobilenetv2_100_stra", "kwargs": kwargs}, "state_dict": model.state_dict()}
    torch.save(saved, checkpoint)
    done = subprocess.run(
        [sys.executable, "-m", "stra_face.training.face", "modes", "--checkpoint", str(checkpoint),
         "--cfp", str(SHARED / "cfp"), "--out", str(tmp_path / "figures"), "--people", "2", "--limit", "6"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    modes = [line for line in done.stdout.splitlines() if line.startswith("mode ")]
    assert len(modes) == 8  # G = 8 modes, the StRA block's default
    for name in ("face_modes_per_face.png", "face_modes_distribution.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000
