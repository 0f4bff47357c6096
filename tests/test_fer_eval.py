"""FER evaluation: TTA modes evaluated together share their views, and --json resumes."""

from __future__ import annotations

import json

import numpy as np

from stra_face.training.fer.data import FerData, write_csv
from stra_face.training.fer.trainer import evaluate, evaluate_ttas, run_eval


def synthetic(count: int = 40) -> FerData:
    rng = np.random.default_rng(0)
    usage = np.array(["PublicTest", "PrivateTest"] * (count // 2))
    return FerData(rng.integers(0, 256, (count, 48, 48), dtype=np.uint8), rng.integers(0, 7, count), usage)


def brightness_predictor(calls: list):
    """Logits from the left/right brightness of each view: a mirror changes them, so flip differs from none."""

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        left, right = batch[..., :24].mean(axis=(1, 2, 3)), batch[..., 24:].mean(axis=(1, 2, 3))
        return np.stack([left * k - right for k in range(7)], axis=1).astype(np.float32)

    return predict


def test_modes_evaluated_together_share_views_and_match_separate_runs():
    data, calls = synthetic(), []
    together = evaluate_ttas(brightness_predictor(calls), data, "PublicTest", ["none", "flip", "tencrop"])
    assert len(calls) == 1 + 1 + 10, "the unmirrored view of none and flip runs once"
    for report in together:
        alone = evaluate(brightness_predictor([]), data, "PublicTest", report.tta)
        assert report.accuracy == alone.accuracy and report.confusion == alone.confusion
    assert sum(map(sum, together[0].confusion)) == 20


def test_eval_json_is_reused_for_the_same_file_and_resumes(tmp_path, monkeypatch):
    csv = tmp_path / "fer2013.csv"
    write_csv(synthetic(), csv)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"stand-in: the predictor below is patched in")
    calls = []
    monkeypatch.setattr("stra_face.training.fer.trainer.load_checkpoint_model", lambda path: (None, {}))
    monkeypatch.setattr("stra_face.training.fer.trainer.torch_predictor", lambda model: brightness_predictor(calls))
    out = tmp_path / "reports.json"

    def run(ttas):
        return run_eval(checkpoint=checkpoint, data=str(csv), splits=["PublicTest"], tta=ttas, json_path=str(out))

    first = run(["none"])
    assert len(calls) == 1 and set(first) == {"PublicTest/none"}
    second = run(["none", "flip"])  # none comes from the JSON; flip needs both of its views
    assert len(calls) == 3 and second["PublicTest/none"] == first["PublicTest/none"]
    assert set(json.loads(out.read_text())["reports"]) == {"PublicTest/none", "PublicTest/flip"}
    checkpoint.write_bytes(b"another file")  # a different file never reuses the reports
    run(["none"])
    assert len(calls) == 4
