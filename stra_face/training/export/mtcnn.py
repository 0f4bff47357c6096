"""Export facenet-pytorch's MTCNN (P-Net, R-Net, O-Net) to ONNX for the service's torch-free detector.

    python -m stra_face.training.export.mtcnn --out stra_face/assets/models

Each network comes from facenet-pytorch's own module with the weights its wheel ships, goes through
the project's exporter and parity check (fp32: the files are small and the detector's parity with
facenet-pytorch's `detect_face` matters more than bytes), and one card describes all three.
Input "input": (N, 3, H, W) float32 RGB scaled as (pixel - 127.5) / 128; P-Net takes any H, W >= 12.
"""

from __future__ import annotations

import argparse
import platform
from importlib.metadata import version
from pathlib import Path

import torch

from stra_face.training.export.onnx_export import check_parity, export_onnx
from stra_face.training.provenance import code_revision
from stra_face.vision.cards import ModelCard, file_facts

# name -> (facenet-pytorch class, export input shape, parity input shapes, output names in the module's order)
NETWORKS = {
    "pnet": ("PNet", (3, 12, 12), [(3, 12, 12), (3, 37, 53), (3, 240, 427)], ("regression", "probability")),
    "rnet": ("RNet", (3, 24, 24), [(3, 24, 24)], ("regression", "probability")),
    "onet": ("ONet", (3, 48, 48), [(3, 48, 48)], ("regression", "landmarks", "probability")),
}
CARD = "mtcnn.card.json"


def export_mtcnn(out: Path) -> ModelCard:
    import facenet_pytorch.models.mtcnn as mtcnn

    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (class_name, shape, parity_shapes, outputs) in NETWORKS.items():
        model = getattr(mtcnn, class_name)().eval()
        path = export_onnx(
            model, out / f"mtcnn_{name}.onnx", shape, output_names=outputs, dynamic_spatial=name == "pnet"
        )
        error = max(check_parity(model, path, parity_shape) for parity_shape in parity_shapes)
        files[name] = file_facts(path) | {
            "outputs": list(outputs),
            "parity_max_abs_error": error,
            "parity_input_shapes": [list(s) for s in parity_shapes],
        }
        print(f"{path}: {path.stat().st_size / 1024:.0f} KiB, max abs error {error:.2e}")
    card = ModelCard(
        task="face detection: MTCNN's three cascaded networks (Zhang et al. 2016), run by stra_face.vision.detect",
        input="input: (N, 3, H, W) float32 RGB, (pixel - 127.5) / 128; P-Net any H, W >= 12, R-Net 24x24, O-Net 48x48",
        outputs="probability (N, 2[, h, w]) softmax (face = index 1); "
        "regression (N, 4[, h, w]) box offsets in box units; "
        "O-Net landmarks (N, 10): x of 5 points, then y, relative to the box",
        precision="fp32",
        files=files,
        extra={
            "source": f"facenet-pytorch {version('facenet-pytorch')} (MIT): "
            "its PNet / RNet / ONet modules and the weights in its wheel "
            "(converted by that project from the original MTCNN release); not retrained here",
            "export": {
                "code": "stra_face/training/export/mtcnn.py",
                "revision": code_revision(),
                "torch": torch.__version__,
                "hardware": f"{platform.machine()} CPU",
            },
        },
    )
    card.write(out / CARD)
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stra_face.training.export.mtcnn", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=Path("stra_face/assets/models"))
    export_mtcnn(parser.parse_args(argv).out)


if __name__ == "__main__":
    main()
