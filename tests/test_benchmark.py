"""The verification benchmark: readers for .bin / LFW pairs.txt / CFP, and the 10-fold protocol."""

from __future__ import annotations

import json
import pickle
import shlex

import cv2
import numpy as np
import pytest

from conftest import SHARED_DATA, need
from stra_face.training.eval import verification as benchmark
from stra_face.training.eval.embedders import FacePreparer, load_rgb
from stra_face.training.eval.verification import (
    PairSet,
    calibrate,
    contiguous_folds,
    evaluate_pairs,
    read_bin,
    read_cfp,
    read_lfw_pairs,
    roc_curve,
    ten_fold_accuracy,
    threshold_at_far,
)


def colour_face(identity: int, rng) -> np.ndarray:
    """A 112x112 image whose mean colour encodes its identity, plus noise."""
    base = np.array([identity * 37 % 256, identity * 91 % 256, identity * 53 % 256], np.float32)
    return np.clip(base + rng.normal(0, 6, (112, 112, 3)), 0, 255).astype(np.uint8)


def mean_colour_embedder(faces: np.ndarray) -> np.ndarray:
    return faces.reshape(len(faces), -1, 3).mean(1) - 127.5


def encode(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture
def synthetic_bin(tmp_path):
    rng = np.random.default_rng(0)
    images, issame = [], []
    for pair in range(40):
        same = pair % 2 == 0
        a = pair
        b = a if same else a + 100
        images += [encode(colour_face(a, rng)), encode(colour_face(b, rng))]
        issame.append(same)
    path = tmp_path / "synthetic.bin"
    path.write_bytes(pickle.dumps((images, issame), protocol=4))
    return path


def test_bin_reader_and_protocol_on_a_synthetic_file(synthetic_bin, tmp_path):
    pairset = read_bin(synthetic_bin)
    assert pairset.pairs.shape == (40, 2) and pairset.pairs[3].tolist() == [6, 7]
    assert pairset.issame.sum() == 20 and list(np.bincount(pairset.folds)) == [4] * 10
    plain, mirrored = benchmark.embed_images(mean_colour_embedder, pairset.images)
    result = evaluate_pairs(pairset, plain, mirrored)
    assert result.accuracy_mean == 1.0 and len(result.fold_accuracies) == 10


def test_contiguous_folds_match_kfold_without_shuffle():
    folds = contiguous_folds(23, 10)
    assert list(np.bincount(folds)) == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.all(np.diff(folds) >= 0)


def test_ten_fold_picks_threshold_on_other_folds():
    # Fold 0 is mislabelled on purpose: its own labels must not influence its threshold.
    distances = np.tile(np.r_[np.full(5, 0.5), np.full(5, 1.5)], 10)
    issame = np.tile(np.r_[np.ones(5, bool), np.zeros(5, bool)], 10)
    folds = np.repeat(np.arange(10), 10)
    issame[:10] = ~issame[:10]
    accuracies, thresholds = ten_fold_accuracy(distances, issame, folds)
    assert accuracies[0] == 0.0 and all(a == 1.0 for a in accuracies[1:])
    assert 0.5 < thresholds[0] <= 1.5


def test_threshold_at_far_and_roc():
    rng = np.random.default_rng(1)
    impostors, genuines = rng.normal(0, 0.1, 5000), rng.normal(0.6, 0.1, 1000)
    similarities = np.r_[genuines, impostors]
    issame = np.r_[np.ones(1000, bool), np.zeros(5000, bool)]
    t = threshold_at_far(similarities, issame, 1e-3)
    assert np.sum(impostors >= t) <= 5 and np.sum(impostors >= np.nextafter(t, -np.inf) - 1e-9) >= 5
    assert threshold_at_far(similarities, issame, 1e-4) is None  # 5000 impostors cannot measure 1e-4
    far, tar, _ = roc_curve(similarities, issame)
    assert far[-1] == 1.0 and tar[-1] == 1.0 and np.all(np.diff(far) >= 0)


def test_lfw_pairs_reader(tmp_path):
    lines = ["2\t2"]
    for fold in range(2):
        lines += [f"Person_{fold}\t1\t2", f"Person_{fold}\t2\t3"]
        lines += [f"Person_{fold}\t1\tOther_{fold}\t1", f"Person_{fold}\t3\tOther_{fold}\t2"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairset = read_lfw_pairs(tmp_path / "pairs.txt", tmp_path / "images")
    assert pairset.issame.tolist() == [True, True, False, False] * 2
    assert pairset.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert str(pairset.images[pairset.pairs[2, 1]]).endswith("images/Other_0/Other_0_0001.jpg")
    assert len(pairset.images) == 10  # repeated images are listed once


def test_real_lfw_pairs_file_structure():
    pairset = read_lfw_pairs(need(SHARED_DATA / "lfw" / "pairs.txt"), SHARED_DATA / "lfw" / "images")
    assert len(pairset.issame) == 6000 and pairset.issame.sum() == 3000
    assert list(np.bincount(pairset.folds)) == [600] * 10


def test_cfp_protocol_reader_on_the_real_release():
    root = need(SHARED_DATA / "cfp")
    fp, ff = read_cfp(root, "FP"), read_cfp(root, "FF")
    for pairset in (fp, ff):
        assert len(pairset.issame) == 7000 and pairset.issame.sum() == 3500
        assert list(np.bincount(pairset.folds)) == [700] * 10
        assert all(path.exists() for path in pairset.images[:20])
    assert all("frontal" in str(fp.images[i]) for i in fp.pairs[:, 0]) and all(
        "profile" in str(fp.images[j]) for j in fp.pairs[:, 1]
    )


@pytest.mark.parametrize("image", ["001/frontal/01.jpg", "002/frontal/02.jpg", "003/profile/01.jpg"])
def test_raw_cfp_images_are_detected_and_aligned_like_the_released_crops(image):
    root = need(SHARED_DATA / "cfp")
    preparer = FacePreparer()
    aligned = preparer(load_rgb(root / "raw_sample" / image)).astype(np.float32)
    released = load_rgb(root / "aligned112" / image)
    assert aligned.shape == (112, 112, 3) and preparer.fallbacks == 0
    # The shared crops were made with the same MTCNN + template: a few grey levels of JPEG and
    # landmark jitter apart (a plain resize of the raw image is ~49 levels off, another face ~87).
    assert np.abs(aligned - released).mean() < 20


def test_calibration_file_is_keyed_by_sha(tmp_path):
    rng = np.random.default_rng(2)
    genuine = rng.normal(size=(200, 8))
    plain = np.concatenate([genuine, genuine + rng.normal(0, 0.3, (200, 8)), rng.normal(size=(2000, 8))])
    pairs = np.r_[np.c_[np.arange(200), np.arange(200, 400)], np.c_[np.arange(400, 1400), np.arange(1400, 2400)]]
    issame = np.r_[np.ones(200, bool), np.zeros(1000, bool)]
    thresholds = calibrate(PairSet("x", [None] * 2400, pairs, issame, contiguous_folds(1200)), plain)
    assert list(thresholds) == ["0.01", "0.001"] and thresholds["0.001"] >= thresholds["0.01"]
    benchmark.write_thresholds(tmp_path / "t.json", "abc", {"thresholds": thresholds})
    benchmark.write_thresholds(tmp_path / "t.json", "def", {"thresholds": {}})
    assert set(json.loads((tmp_path / "t.json").read_text())) == {"abc", "def"}


def test_command_on_an_onnx_model_writes_results_roc_and_thresholds(synthetic_bin, tmp_path, random_onnx_models):
    from stra_face.vision.inference import sha256_file

    out, thresholds = tmp_path / "out", tmp_path / "thresholds.json"
    from stra_face.training.eval import cli

    results = cli.main(
        [
            "--onnx",
            str(random_onnx_models["embedding"]),
            "--bin",
            str(synthetic_bin),
            "--out",
            str(out),
            "--calibrate",
            "synthetic",
            "--thresholds-file",
            str(thresholds),
        ]
    )
    assert results["synthetic"].pairs == 40 and 0 <= results["synthetic"].accuracy_mean <= 1
    assert (out / "roc.png").stat().st_size > 1000
    assert json.loads((out / "results.json").read_text())["synthetic"]["tar_at_far"] == {
        "0.01": None,
        "0.001": None,
        "0.0001": None,
    }
    assert sha256_file(random_onnx_models["embedding"]) in json.loads(thresholds.read_text())


def test_the_benchmark_step_and_the_command_that_reproduces_it_agree(synthetic_bin, tmp_path, random_onnx_models):
    """What `face ship` and the dlib port call (the function) and what their cards tell users to run
    (the command line) measure the same thing."""
    from stra_face.training.eval import cli
    from stra_face.training.eval.embedders import onnx_embedder
    from stra_face.vision.inference import sha256_file

    onnx = random_onnx_models["embedding"]
    sources = benchmark.PairSources(bins=[synthetic_bin])
    calibration = benchmark.Calibration("synthetic", onnx, tmp_path / "thresholds.json")
    direct = benchmark.benchmark(
        onnx_embedder(onnx, ["CPUExecutionProvider"]), "m", sources.load(), tmp_path / "a", calibration=calibration
    )
    command = benchmark.reproduce_command(onnx, sources, tmp_path / "b", calibration)
    assert command.startswith("python -m stra_face.training.eval --onnx ")
    again = cli.main(shlex.split(command)[3:])
    assert again["synthetic"].accuracy_mean == pytest.approx(direct["synthetic"].accuracy_mean, abs=1e-6)
    assert (tmp_path / "b" / "results.json").exists() and sha256_file(onnx) in json.loads(
        (tmp_path / "thresholds.json").read_text()
    )
    with pytest.raises(ValueError, match="cfp_fp"):
        benchmark.benchmark(
            onnx_embedder(onnx, ["CPUExecutionProvider"]),
            "m",
            sources.load(),
            tmp_path / "c",
            calibration=benchmark.Calibration("cfp_fp", onnx, tmp_path / "t2.json"),
        )


def test_pair_sources_from_the_shared_data_layout(tmp_path):
    sources = benchmark.PairSources.from_roots(tmp_path / "cfp", tmp_path / "lfw", tmp_path / "overlap.txt")
    assert sources.lfw_pairs == tmp_path / "lfw" / "pairs.txt" and sources.lfw_root == tmp_path / "lfw" / "aligned112"
    assert sources.argv() == [
        "--cfp",
        str(tmp_path / "cfp"),
        "--lfw-pairs",
        str(tmp_path / "lfw" / "pairs.txt"),
        "--lfw-root",
        str(tmp_path / "lfw" / "aligned112"),
        "--lfw-exclude",
        str(tmp_path / "overlap.txt"),
    ]
    with pytest.raises(ValueError, match="no benchmark"):
        benchmark.PairSources().load()
