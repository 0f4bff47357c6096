"""The file and folder commands, run as a person runs them: `stra-face <command> ...` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FACES, ROOT, need
from stra_face.cli import COMMANDS

SCRIPT = Path(sys.executable).parent / "stra-face"
# The installed console script when there is one (as users run it), else the same entry point.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from stra_face.cli import main; main()"]
ENV = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "STRA_PROVIDERS": '["CPUExecutionProvider"]'}
OBAMA, OBAMA2, BIDEN = "examples/obama-480p.jpg", "examples/knn_examples/train/obama/obama2.jpg", "examples/biden.jpg"


def stra_face(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *map(str, args)], check=False, capture_output=True, text=True, env=ENV, cwd=cwd or ROOT, timeout=300
    )


def photos(tmp_path: Path, layout: dict[str, str]) -> Path:
    """A folder of copies of real photos: {relative path: photo under ../shared/data/faces}."""
    folder = tmp_path / "photos"
    for target, source in layout.items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(need(FACES / source), folder / target)
    return folder


FILE_COMMANDS = ("verify", "analyze", "enroll", "identify", "subjects", "cluster")


def test_help_of_every_file_command_is_fast():
    """Measured and printed (a loaded CI machine varies too much for a tight bound): no model,
    numpy or ONNX Runtime is loaded to answer --help."""
    for command in ["", *FILE_COMMANDS]:
        start = time.perf_counter()
        done = stra_face(*([command] if command else []), "--help")
        took = time.perf_counter() - start
        print(f"stra-face {command} --help: {took:.2f} s")
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (command, done.stderr)
        assert took < 10


# Runs `stra-face <args>` in-process and reports, on stderr, the exit status, whether torch got
# loaded and how long the command took (interpreter start-up left out).
HELP_PROBE = """
import sys, time
start = time.perf_counter()
from stra_face.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exit:
    code = exit.code
print(f"probe: exit={code} torch={'torch' in sys.modules} took={time.perf_counter() - start:.3f}", file=sys.stderr)
"""
SUB_COMMANDS = [
    ("fer", "train"),
    ("fer", "eval"),
    ("fer", "ship"),
    ("fer", "gpu-run"),
    ("face", "train"),
    ("face", "pipeline"),
    ("face", "prepare"),
    ("face", "ship"),
]


def probe(*args: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE, *args],
        check=False,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=300,
    )
    report = done.stderr.strip().splitlines()[-1]
    assert report.startswith("probe: "), done.stderr
    return done, dict(item.split("=") for item in report.removeprefix("probe: ").split())


def test_help_of_every_command_and_sub_command_loads_no_torch():
    """--help is parsed before any work module is imported: no torch (nor anything heavy), whatever
    the command. Times are printed, not bounded (a loaded CI machine varies too much)."""
    for args in [(command,) for command in COMMANDS] + SUB_COMMANDS:
        done, report = probe(*args, "--help")
        print(f"stra-face {' '.join(args)} --help: {report['took']} s")
        assert report["exit"] == "0" and "usage" in done.stdout.lower(), (args, done.stderr)
        assert report["torch"] == "False", f"stra-face {' '.join(args)} --help imported torch"


def test_an_unknown_command_is_named_on_stderr_with_exit_2():
    done, report = probe("benchmark")  # the old name of `eval`
    assert report["exit"] == "2" and done.stdout == ""
    assert done.stderr.startswith("stra-face: unknown command 'benchmark'\nusage: stra-face <command>")
    assert "  eval " in done.stderr


@pytest.mark.slow
def test_model_names_are_checked_after_parsing():
    """flops and export no longer list the registry in --help (it needs torch): a wrong name is still refused."""
    for args in (("flops", "--models", "resnet5"), ("export", "resnet5", "--out", "x.onnx")):
        done, report = probe(*args)
        assert report["exit"] == "2" and "unknown model" in done.stderr and "resnet50_stra" in done.stderr, done.stderr


def test_bad_input_exits_non_zero_with_a_one_line_message(tmp_path):
    for args in (
        ("verify", tmp_path / "missing.jpg", tmp_path / "other.jpg"),
        ("analyze", tmp_path / "nowhere"),
        ("subjects", "--gallery", tmp_path / "none.sqlite3"),
    ):
        done = stra_face(*args)
        assert done.returncode == 2 and done.stdout == "", done
        assert done.stderr.startswith(f"stra-face {args[0]}: error: ") and len(done.stderr.strip().splitlines()) == 1, (
            done.stderr
        )
        assert "missing.jpg" in done.stderr or "nowhere" in done.stderr or "none.sqlite3" in done.stderr


@pytest.mark.slow
def test_verify_prints_the_decision_and_exits_0_either_way():
    same = stra_face("verify", need(FACES / OBAMA), need(FACES / OBAMA2))
    assert same.returncode == 0, same.stderr
    answer = json.loads(same.stdout)
    assert answer["verified"] is True and answer["decision"]["far"] == 0.001
    different = stra_face("verify", FACES / OBAMA, FACES / BIDEN)
    assert different.returncode == 0 and json.loads(different.stdout)["verified"] is False


@pytest.mark.slow
def test_analyze_writes_csv_json_and_drawings(tmp_path):
    from PIL import Image

    folder = photos(tmp_path, {"a/two_people.jpg": "examples/two_people.jpg", "a/b/biden.jpg": BIDEN})
    Image.new("RGB", (160, 120), "white").save(folder / "blank.png")
    (folder / "notes.txt").write_text("not an image: ignored in a folder")
    done = stra_face("analyze", folder, "--csv", tmp_path / "faces.csv", "--draw", tmp_path / "drawn")
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "faces.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    per_image = {Path(row["path"]).name: [r for r in rows if r["path"] == row["path"]] for row in rows}
    assert {name: len(faces) for name, faces in per_image.items()} == {
        "two_people.jpg": 2,
        "biden.jpg": 1,
        "blank.png": 1,
    }
    assert (
        per_image["blank.png"][0]["face"] == "" and per_image["blank.png"][0]["faces_found"] == "0"
    )  # no face: one empty row
    assert all(float(r["x2"]) > float(r["x1"]) and r["expression"] in r for r in rows if r["face"])
    assert sorted(str(p.relative_to(tmp_path / "drawn")) for p in (tmp_path / "drawn").rglob("*.*")) == [
        "photos/a/b/biden.jpg",
        "photos/a/two_people.jpg",
        "photos/blank.png",
    ]

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    done = stra_face(
        "analyze", folder / "a" / "b" / "biden.jpg", tmp_path / "broken.png", "--json", tmp_path / "faces.json"
    )
    assert done.returncode == 1 and "broken.png" in done.stderr  # the bad image is named, the good one still analysed
    entries = json.loads((tmp_path / "faces.json").read_text())
    assert [len(e["faces"]) if "faces" in e else e["error"]["code"] for e in entries] == [1, "invalid_image"]
    assert set(entries[0]["faces"][0]) == {"box", "score", "landmarks", "quality", "embedding", "expression"}


@pytest.mark.slow
def test_enroll_identify_and_subjects_name_the_right_person(tmp_path):
    people = photos(tmp_path, {"obama/1.jpg": OBAMA, "biden/1.jpg": BIDEN, "alex/1.png": "examples/alex-lacamoire.png"})
    gallery = tmp_path / "gallery.sqlite3"
    enrolled = stra_face("enroll", people, "--gallery", gallery)
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["subjects"] == 3
    found = stra_face(
        "identify", FACES / OBAMA2, FACES / "examples/knn_examples/test/obama_and_biden.jpg", "--gallery", gallery
    )
    assert found.returncode == 0, found.stderr
    first, group = json.loads(found.stdout)
    assert first["faces"][0]["matches"][0]["subject_id"] == "obama" and first["faces"][0]["matches"][0]["accepted"]
    assert [face["matches"][0]["subject_id"] for face in group["faces"][:2]] == ["obama", "biden"]
    listed = json.loads(stra_face("subjects", "--gallery", gallery).stdout)
    assert sorted(s["id"] for s in listed["subjects"]) == ["alex", "biden", "obama"]
    named = stra_face(
        "analyze",
        FACES / "examples/knn_examples/test/obama_and_biden.jpg",
        "--gallery",
        gallery,
        "--draw",
        tmp_path / "drawn",
    )
    assert named.returncode == 0, named.stderr
    faces = json.loads(named.stdout)[0]["faces"]
    assert [face["identity"] for face in faces[:2]] == ["obama", "biden"] and "expression" in faces[0]
    assert (tmp_path / "drawn" / "obama_and_biden.jpg").stat().st_size > 0


@pytest.mark.slow
def test_cluster_puts_the_two_obama_photos_together(tmp_path):
    folder = photos(tmp_path, {"1.jpg": OBAMA, "2.jpg": OBAMA2, "3.jpg": BIDEN, "4.png": "examples/alex-lacamoire.png"})
    done = stra_face("cluster", folder, "--out", tmp_path / "clusters.json")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "clusters.json").read_text())
    assert result["faces"] == 4 and result["far"] == 0.001
    assert [sorted(Path(f["path"]).name for f in c["faces"]) for c in result["clusters"]] == [["1.jpg", "2.jpg"]]
    assert sorted(Path(f["path"]).name for f in result["singletons"]) == ["3.jpg", "4.png"]
