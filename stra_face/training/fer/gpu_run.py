"""One command for a GPU lease: ResNet50-StRA and its same-recipe baseline, trained, evaluated and shipped.

The work of `python -m stra_face.training.fer gpu-run`; its options, and what it writes, are described in
cli.py (GPU_RUN, shown by `gpu-run --help`), which parses them without loading torch.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from stra_face.training import engine
from stra_face.training.fer import ferplus
from stra_face.training.fer.data import SPLITS, load_fer2013, write_csv
from stra_face.training.fer.trainer import (
    BENCHMARKS,
    FerConfig,
    benchmark_reports,
    find_votes,
    load_checkpoint_model,
    report_key,
    ship,
    torch_predictor,
    train,
)
from stra_face.training.provenance import code_revision, hardware

PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB
TTA = ("none", "flip", "tencrop")
SMOKE = [
    "--epochs",
    "1",
    "--max-steps",
    "2",
    "--batch-size",
    "8",
    "--eval-subset",
    "16",
    "--workers",
    "0",
    "--compile",
    "false",
]


def split_into_parts(path: Path, folder: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """`path` cut into `folder/<name>.partNN` pieces; `folder/JOIN.sh` rejoins and checks them."""
    folder.mkdir(parents=True, exist_ok=True)
    data = path.read_bytes()
    pieces = []
    for index, start in enumerate(range(0, len(data), part_bytes)):
        piece = folder / f"{path.name}.part{index:02d}"
        piece.write_bytes(data[start : start + part_bytes])
        pieces.append(piece)
    join = folder / "JOIN.sh"
    lines = (
        join.read_text().splitlines()
        if join.exists()
        else ["#!/bin/sh", "# rejoin every file cut into parts, then check it", 'cd "$(dirname "$0")" || exit 1']
    )
    lines.append(
        f"cat {path.name}.part* > {path.name} && echo '{hashlib.sha256(data).hexdigest()}  {path.name}' | sha256sum -c"
    )
    join.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    return pieces


def bring_back(out: Path, checkpoint: Path, folder: Path) -> list[Path]:
    """What a device lease can return (at most 8 files of 16 MiB): every small file of `out` in one
    report.tar.gz, and the shipped model's fp16 checkpoint in 15 MiB parts with JOIN.sh."""
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "report.tar.gz", "w:gz") as archive:
        for path in sorted(out.rglob("*")):
            if (
                path.is_file()
                and folder not in path.parents
                and "work" not in path.relative_to(out).parts
                and path.stat().st_size <= 2**20
            ):
                archive.add(path, arcname=str(Path(out.name) / path.relative_to(out)))
    return [folder / "report.tar.gz", *split_into_parts(checkpoint, folder)]


def save_fp16_checkpoint(best: Path, out: Path, provenance: dict) -> Path:
    """The checkpoint without optimiser state, weights as fp16 (loads with load_checkpoint_model)."""
    checkpoint = torch.load(best, map_location="cpu", weights_only=False)
    small = {key: checkpoint[key] for key in ("model", "epoch", "public_accuracy", "config")}
    small["provenance"] = provenance
    small["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    torch.save(small, out)
    return out


def plot_curves(runs: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for name, log in runs.items():
        with log.open() as handle:
            rows = list(csv.DictReader(handle))
        epochs = [int(r["epoch"]) + 1 for r in rows]
        public = next(k for k in rows[0] if k.startswith("public_accuracy"))
        accuracy.plot(epochs, [float(r[public]) for r in rows], label=name)
        loss.plot(epochs, [float(r["train_loss"]) for r in rows], label=name)
    accuracy.set(xlabel="epoch", ylabel="PublicTest accuracy", title="model selection split")
    loss.set(xlabel="epoch", ylabel="train loss (label-smoothed CE)", title="training")
    accuracy.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def column_title(key: str) -> str:
    """ "ferplus/PrivateTest/flip" -> "FER+ PrivateTest flip"; FER2013 keys have no benchmark prefix."""
    parts = key.split("/")
    return f"{BENCHMARKS[parts[0] if len(parts) == 3 else 'fer2013']} {parts[-2]} {parts[-1]}"


def summarise(results: dict[str, dict], groups: list[str], seeds: list[int]) -> str:
    """Markdown: one row per run, then mean and spread (max - min) over seeds per group
    (a group is a run name without its seed: model, and label set when not FER2013)."""
    keys = list(next(iter(results.values()))["eval"])
    header = "| run | epochs | img/s | minutes | " + " | ".join(column_title(key) for key in keys) + " |"
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for name, run in results.items():
        accuracies = " | ".join(f"{run['eval'][key]:.2%}" for key in keys)
        lines.append(
            f"| {name} | {run['epochs']} | {run['images_per_second']:.0f} | {run['seconds'] / 60:.1f} | {accuracies} |"
        )
    if len(seeds) > 1:
        lines += ["", "Mean over seeds (spread = max - min):", ""]
        for group in groups:
            cells = []
            for key in keys:
                values = [results[f"{group}_seed{seed}"]["eval"][key] for seed in seeds]
                cells.append(f"{np.mean(values):.2%} ± {(max(values) - min(values)) / 2:.2%}")
            lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def smoke_data(source: str, path: Path, per_split: int = 48, votes: str | None = None) -> str:
    """A seeded sample of every split written as fer2013.csv: the smoke run's whole data set, with
    the FER+ votes of the same rows next to it (ferplus_votes.npz) when the source has votes."""
    data = load_fer2013(source)
    keep = np.concatenate(
        [
            np.flatnonzero(data.usage == split)[
                np.random.default_rng(0).permutation((data.usage == split).sum())[:per_split]
            ]
            for split in SPLITS
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(data.take(keep), path)
    found = find_votes(source, votes)
    if found is not None:
        ferplus.write_votes(
            ferplus.FerPlusVotes(found.votes[keep], found.matched[keep]), ferplus.default_votes_path(path)
        )
    return str(path)


def run_name(model: str, labels: str, seed: int) -> str:
    return f"{model}_seed{seed}" if labels == "fer2013" else f"{model}_{labels}_seed{seed}"


def run(args: argparse.Namespace, overrides: list[str], command: str) -> dict:
    """Both models trained, evaluated and the best StRA run shipped: cli.py's parsed `gpu-run` arguments,
    FerConfig `overrides` (after `--`), and the `command` line recorded as provenance."""
    out, work = args.out, args.work or args.out / "work"
    out.mkdir(parents=True, exist_ok=True)
    base = engine.parse_config(FerConfig, ["--config", str(args.config), *overrides], "")
    data_path = args.data or base.data
    if args.smoke:
        data_path = smoke_data(data_path, work / "smoke_fer2013.csv", votes=base.ferplus_votes or None)
        overrides = SMOKE + overrides
    label_sets = args.labels or [base.labels]
    models = [base.model, args.baseline]
    started = time.perf_counter()
    data = load_fer2013(data_path)
    votes = find_votes(
        data_path,
        None if args.smoke else base.ferplus_votes or None,
        required="ferplus" in label_sets or args.ship_on == "ferplus",
    )

    results, logs = {}, {}
    for labels in label_sets:
        for seed in args.seeds:
            for model in models:
                name = run_name(model, labels, seed)
                config = engine.parse_config(
                    FerConfig,
                    [
                        "--config",
                        str(args.config),
                        "--model",
                        model,
                        "--seed",
                        str(seed),
                        "--data",
                        data_path,
                        "--out",
                        str(work / name),
                        *overrides,
                        "--labels",
                        labels,
                    ],
                    "",
                )
                if args.smoke:
                    config.ferplus_votes = ""  # the sample's own votes, next to its CSV
                print(
                    f"== {name}: {config.epochs} epochs, batch {config.batch_size}, "
                    f"{config.optimizer} lr {config.lr} per 64, augment on {config.augment_on}, labels {labels}",
                    flush=True,
                )
                run_started = time.perf_counter()
                best = train(config)
                seconds = time.perf_counter() - run_started
                network, checkpoint = load_checkpoint_model(best)
                predict = torch_predictor(network, "cuda" if torch.cuda.is_available() else "cpu")
                evaluation = {
                    key: report.accuracy
                    for split in ("PublicTest", "PrivateTest")
                    for key, report in benchmark_reports(predict, data, votes, split, TTA).items()
                }
                folder = out / name
                folder.mkdir(parents=True, exist_ok=True)
                for file in ("log.csv", "config.json"):
                    (folder / file).write_bytes((work / name / file).read_bytes())
                logs[name] = folder / "log.csv"
                with logs[name].open() as handle:
                    rates = [float(row["images_per_second"]) for row in csv.DictReader(handle)]
                results[name] = {
                    "model": model,
                    "labels": labels,
                    "seed": seed,
                    "epochs": config.epochs,
                    "best_epoch": checkpoint["epoch"] + 1,
                    "seconds": seconds,
                    "images_per_second": float(np.median(rates)),
                    "eval": evaluation,
                    "checkpoint": str(best),
                }
                (folder / "eval.json").write_text(json.dumps(results[name], indent=2) + "\n")
                provenance = {
                    "trained_on": hardware(),
                    "code_revision": code_revision(),
                    "command": command,
                    "training_minutes": round(seconds / 60, 1),
                }
                results[name]["fp16_checkpoint"] = str(
                    save_fp16_checkpoint(best, folder / f"{model}_fp16.pt", provenance)
                )
                print(json.dumps({name: evaluation}), flush=True)

    # ship the StRA run that is best on PublicTest (model selection never looks at PrivateTest)
    stra_runs = [name for name in results if results[name]["model"] == base.model]
    chosen = max(stra_runs, key=lambda name: results[name]["eval"][report_key(args.ship_on, "PublicTest", "none")])
    onnx_path = out / "expression.onnx"
    card_extra = {
        "trained_on": hardware(),
        "code_revision": code_revision(),
        "command": command,
        "training_minutes": round(results[chosen]["seconds"] / 60, 1),
        "selected_run": chosen,
    }
    ship(
        Path(results[chosen]["checkpoint"]), onnx_path, data_path, fp16=True, plots=out / "plots", card_extra=card_extra
    )

    summary = {
        "runs": results,
        "shipped": chosen,
        "hardware": hardware(),
        "code_revision": code_revision(),
        "minutes": (time.perf_counter() - started) / 60,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    groups = list(dict.fromkeys(name.rsplit("_seed", 1)[0] for name in results))
    (out / "summary.md").write_text(
        f"# FER gpu-run on {summary['hardware']}, code {summary['code_revision']}\n\n"
        + summarise(results, groups, args.seeds)
    )
    plot_curves(logs, out / "curves.png")
    if args.bring_back:
        files = bring_back(out, Path(results[chosen]["fp16_checkpoint"]), args.bring_back)
        print(
            f"for the trip back: {', '.join(f.name for f in files)} in {args.bring_back} "
            "(sh JOIN.sh there rejoins the checkpoint)"
        )
    print((out / "summary.md").read_text())
    print(f"shipped {chosen} as {onnx_path} ({summary['minutes']:.1f} min in all)")
    return summary
