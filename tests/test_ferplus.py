"""FER+ labels: vote mapping, majority protocol, soft labels in training, the FER+ benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, need
from stra_face.training import engine
from stra_face.training.fer import ferplus
from stra_face.training.fer.data import FerData, write_csv
from stra_face.training.fer.trainer import FerConfig, mixup, run_eval, train
from stra_face.vision.preprocess import EXPRESSIONS

FER_DIR = SHARED_DATA / "fer2013"


def votes_of(*rows: dict[str, int], matched: list[bool] | None = None) -> ferplus.FerPlusVotes:
    """Vote rows given by FER+ column name, e.g. {"anger": 6, "neutral": 4}."""
    votes = np.array([[row.get(name, 0) for name in ferplus.FERPLUS_COLUMNS] for row in rows], np.uint8)
    return ferplus.FerPlusVotes(votes, np.array(matched if matched is not None else [True] * len(rows)))


def test_majority_maps_ferplus_columns_to_fer2013_classes_and_leaves_out_what_the_protocol_says():
    votes = votes_of(
        {"anger": 6, "neutral": 4},  # angry
        {"happiness": 10},  # happy
        {"sadness": 5, "fear": 3, "unknown": 2},  # sad
        {"surprise": 4, "fear": 4, "neutral": 2},  # tie: left out
        {"unknown": 6, "disgust": 4},  # majority unknown: left out
        {"NF": 10},  # not a face: left out
        {"contempt": 5, "disgust": 3, "anger": 2},  # contempt: left out with 7 classes, class 7 with 8
        {"fear": 9, "surprise": 1},  # fear, but FER+ did not match the image: left out
        matched=[True] * 7 + [False],
    )
    index = EXPRESSIONS.index
    assert ferplus.majority_labels(votes).tolist() == [index("angry"), index("happy"), index("sad"), -1, -1, -1, -1, -1]
    assert ferplus.majority_labels(votes, 8)[6] == 7 and ferplus.class_names(8)[7] == "contempt"


def test_vote_distributions_drop_unknown_nf_and_contempt_votes():
    votes = votes_of(
        {"neutral": 4, "sadness": 2, "contempt": 2, "unknown": 1, "NF": 1}, {"unknown": 7, "NF": 3}, {"contempt": 10}
    )
    shares = ferplus.vote_distributions(votes)
    assert shares.shape == (3, 7)
    np.testing.assert_allclose(
        shares[0, [EXPRESSIONS.index("neutral"), EXPRESSIONS.index("sad")]], [4 / 6, 2 / 6], rtol=1e-6
    )
    assert shares[0].sum() == pytest.approx(1) and not shares[1].any() and not shares[2].any()
    eight = ferplus.vote_distributions(votes, 8)
    assert eight[0, 7] == pytest.approx(2 / 8) and eight[2, 7] == pytest.approx(1)


def test_relabel_keeps_labelled_rows_only_and_checks_alignment():
    data = FerData(
        np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 2]), np.array(["Training", "PublicTest", "PrivateTest"])
    )
    votes = votes_of({"happiness": 7, "neutral": 3}, {"unknown": 10}, {"surprise": 5, "fear": 5})
    soft = ferplus.relabel(data, votes, "probability")
    assert len(soft) == 2 and soft.targets.shape == (2, 7) and soft.usage.tolist() == ["Training", "PrivateTest"]
    assert soft.split("Training").targets[0, EXPRESSIONS.index("happy")] == pytest.approx(0.7)
    majority = ferplus.relabel(data, votes, "majority")
    assert majority.targets is None and majority.labels.tolist() == [EXPRESSIONS.index("happy")]
    with pytest.raises(ValueError, match="aligned row by row"):
        ferplus.relabel(data.take(np.array([0, 1])), votes)
    with pytest.raises(ValueError, match="mode"):
        ferplus.relabel(data, votes, "vote")


def test_reads_ferplus_own_csv(tmp_path):
    path = tmp_path / "fer2013new.csv"
    path.write_text(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        "Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0\n"
        "Training,,0,0,0,0,0,0,0,0,0,10\n"
    )
    votes = ferplus.read_votes(path)
    assert votes.matched.tolist() == [True, False] and votes.votes[0].tolist() == [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    assert ferplus.majority_labels(votes).tolist() == [EXPRESSIONS.index("neutral"), -1]
    (tmp_path / "bad.csv").write_text("emotion,pixels,Usage\n0,1 2,Training\n")
    with pytest.raises(ValueError, match="fer2013new.csv"):
        ferplus.read_votes(tmp_path / "bad.csv")


def test_shared_votes_are_aligned_with_the_fer2013_npz():
    """The README's check: FER+ majority agrees with the FER2013 label on 62.6% of matched images."""
    votes = ferplus.read_votes(need(FER_DIR / "ferplus_votes.npz"))
    with np.load(need(FER_DIR / "fer2013_jpg.npz")) as archive:
        labels, usage = archive["labels"], archive["usage"].astype(str)
    assert len(votes) == len(labels) and votes.matched.sum() == 35_712
    majority = ferplus.majority_labels(votes)
    kept = majority >= 0
    assert 0.60 < (majority[kept] == labels[kept]).mean() < 0.70  # a misaligned pairing agrees on ~18%
    assert 3_000 < (kept & (usage == "PrivateTest")).sum() < 3_589


def synthetic_with_votes(folder, per_split: int = 21):
    """Synthetic FER2013 csv whose FER+ votes mostly agree with the image's class, plus some ties,
    unknown majorities and unmatched rows (which the FER+ benchmark leaves out)."""
    rng = np.random.default_rng(1)
    count = per_split * 3
    labels = np.arange(count) % 7
    images = (rng.integers(0, 60, (count, 48, 48)) + labels[:, None, None] * 25).astype(np.uint8)
    usage = np.repeat(["Training", "PublicTest", "PrivateTest"], per_split)
    write_csv(FerData(images, labels.astype(np.int64), usage), folder / "fer2013.csv")
    votes = np.zeros((count, 10), np.uint8)
    columns = [ferplus._COLUMN[name] for name in EXPRESSIONS]
    votes[np.arange(count), np.array(columns)[labels]] = 7
    votes[np.arange(count), np.array(columns)[(labels + 1) % 7]] = 3
    votes[::5, 8] = 8  # unknown majority
    votes[1::9, np.array(columns)[(labels[1::9] + 1) % 7]] = 7  # ties
    matched = np.arange(count) % 11 != 3
    ferplus.write_votes(ferplus.FerPlusVotes(votes, matched), folder / "ferplus_votes.npz")
    return folder / "fer2013.csv", ferplus.majority_labels(ferplus.FerPlusVotes(votes, matched))


@pytest.mark.slow
def test_training_on_ferplus_soft_labels_with_mixup_then_the_ferplus_benchmark(tmp_path):
    data, majority = synthetic_with_votes(tmp_path)
    config = engine.parse_config(
        FerConfig,
        [
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--labels",
            "ferplus",
            "--ferplus-mode",
            "probability",
            "--mixup",
            "0.4",
            "--model",
            "mobilenetv2_100",
            "--model-kwargs",
            '{"stem_stride": 2}',
            "--epochs",
            "1",
            "--max-steps",
            "3",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--augment-on",
            "device",
            "--eval-tta",
            "none",
        ],
    )
    best = train(config)
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    assert checkpoint["model"]["kwargs"]["num_classes"] == 7 and checkpoint["config"]["labels"] == "ferplus"
    assert np.isfinite(float((tmp_path / "run" / "log.csv").read_text().splitlines()[1].split(",")[1]))

    reports = run_eval(
        checkpoint=best,
        data=str(data),
        splits=["PrivateTest"],
        tta=["none"],
        json_path=tmp_path / "eval.json",
        plots=tmp_path / "plots",
    )
    assert set(reports) == {"PrivateTest/none", "ferplus/PrivateTest/none"}
    private = np.repeat(["Training", "PublicTest", "PrivateTest"], 21) == "PrivateTest"
    assert reports["ferplus/PrivateTest/none"]["images"] == (majority[private] >= 0).sum() < private.sum()
    assert reports["PrivateTest/none"]["images"] == private.sum()
    assert (tmp_path / "plots" / "confusion_ferplus_PrivateTest_none.png").exists()
    assert (
        json.loads((tmp_path / "eval.json").read_text())["reports"]["ferplus/PrivateTest/none"]["benchmark"]
        == "ferplus"
    )


def test_mixup_blends_images_and_targets_with_one_weight():
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    mixed, targets = mixup(images, torch.tensor([0, 1, 2, 3]), 7, alpha=0.4)
    assert targets.shape == (4, 7) and torch.allclose(targets.sum(1), torch.ones(4))
    # image i holds the value i and has class i, so a blended image holds its target's mean class
    assert torch.allclose(mixed[:, 0, 0, 0], targets @ torch.arange(7.0), atol=1e-5)
    soft = torch.full((4, 7), 1 / 7)
    assert torch.allclose(mixup(images, soft, 7, alpha=0.4)[1], soft)  # mixing identical distributions changes nothing


@pytest.mark.slow
def test_evaluation_and_the_cli_do_not_need_albumentations():
    """Only the training loader imports albumentations: eval and ship run where it is not installed."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import sys; import stra_face.training.fer.cli, stra_face.training.fer.gpu_run, "
        "stra_face.training.fer.attention_maps; "
        "assert 'albumentations' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=300)
