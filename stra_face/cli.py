"""`stra-face <command> [args]`: one entry point that hands over to each part's own `main`."""

from __future__ import annotations

import importlib
import sys

# command -> (module, help). Modules are imported only when their command runs; each parses its
# arguments before it imports torch, so that `--help` answers at once.
COMMANDS = {
    "flops": ("stra_face.models.cli", "params and GMACs of every registered model (the paper's Table 1)"),
    "export": ("stra_face.training.export.cli", "export a registered model or checkpoint to ONNX, with a parity check"),
    "verify": ("stra_face.commands.verify", "do two photos show the same person? (JSON like POST /v1/verify)"),
    "analyze": (
        "stra_face.commands.analyze",
        "every face of images and folders: boxes, landmarks, embeddings, expressions (JSON / CSV / drawn)",
    ),
    "enroll": ("stra_face.commands.enroll", "enrol identity folders DIR/<person>/<photo> into a gallery"),
    "identify": ("stra_face.commands.identify", "who is in these photos? (a gallery filled by enroll)"),
    "subjects": ("stra_face.commands.subjects", "list a gallery's subjects"),
    "cluster": ("stra_face.commands.cluster", "group the faces of unlabelled photos into people"),
    "serve": ("stra_face.service.cli", "start the REST API (uvicorn; settings from STRA_* environment variables)"),
    "fer": ("stra_face.training.fer.cli", "train / evaluate / ship the FER2013 / FER+ expression classifier"),
    "face": ("stra_face.training.face.cli", "prepare data / train / ship the face-embedding model"),
    "calibrate": (
        "stra_face.calibration",
        "thresholds for the current model from your own people's photos (DIR/<person>/*.jpg)",
    ),
    "eval": (
        "stra_face.training.eval.cli",
        "10-fold face-verification accuracy (LFW / CFP / .bin), ROC, threshold calibration",
    ),
    "video": (
        "stra_face.tracks.cli",
        "each person in a video as a track: named from a gallery, with an expression timeline",
    ),
    "attention": ("stra_face.training.fer.attention", "mode-attention maps of a trained StRA model (Fig. 3 / Fig. 4)"),
}


def usage() -> str:
    lines = ["usage: stra-face <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0)
    if argv[0] not in COMMANDS:
        print(f"stra-face: unknown command {argv[0]!r}\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(COMMANDS[argv[0]][0])
    module.main(argv[1:])
