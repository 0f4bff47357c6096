"""What a video analysis writes: CSV rows, a video with boxes drawn, a timeline plot, thumbnails."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import cv2
import numpy as np

from stra_face.vision.preprocess import EXPRESSIONS

COLOURS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
]


def colour(track: int) -> tuple[int, int, int]:
    return COLOURS[track % len(COLOURS)]


def thumbnail_jpeg(thumbnail: np.ndarray | None) -> str | None:
    """Base64 JPEG of an RGB thumbnail (for JSON)."""
    if thumbnail is None:
        return None
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(thumbnail, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return base64.b64encode(data.tobytes()).decode() if ok else None


def write_csv(result: dict, path: Path) -> None:
    """One row per track observation: frame, time, track, identity, box, smoothed expression probabilities."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["frame", "time", "track", "identity", "x1", "y1", "x2", "y2", "expression", *EXPRESSIONS])
        rows = []
        for track in result["tracks"]:
            for frame, box, probabilities in zip(track["frames"], track["boxes"], track["expressions"]):
                rows.append(
                    [
                        frame,
                        round(frame / result["fps"], 3),
                        track["id"],
                        track["identity"],
                        *box,
                        EXPRESSIONS[int(np.argmax(probabilities))],
                        *probabilities,
                    ]
                )
        writer.writerows(sorted(rows, key=lambda row: (row[0], row[2])))


class Drawer:
    """Writes each frame with its faces' boxes, track ids, names and expressions (names as known so far)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = Path(path), fps, None

    def __call__(self, image: np.ndarray, result, session) -> None:
        frame = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if self.writer is None:
            self.writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (frame.shape[1], frame.shape[0])
            )
            if not self.writer.isOpened():
                raise OSError(f"cannot write a video to {self.path}")
        for face in result.faces:
            record = session.records.get(face.track)
            name = record.identity()[0] if record else "?"
            x1, y1, x2, y2 = (round(v) for v in face.box)
            bgr = colour(face.track)[::-1]
            cv2.rectangle(frame, (x1, y1), (x2, y2), bgr, 2 if face.detected else 1)
            label = f"#{face.track} {name}"
            if face.probabilities is not None:
                label += f" {EXPRESSIONS[int(np.argmax(face.probabilities))]}"
            cv2.putText(frame, label, (x1, max(12, y1 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, bgr, 1, cv2.LINE_AA)
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def plot_timeline(result: dict, path: Path, max_tracks: int = 8) -> None:
    """One row per track (longest first): smoothed expression probabilities over time, stacked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib (or stra-face[train])") from None
    tracks = result["tracks"][:max_tracks]
    if not tracks:
        raise SystemExit("no track to plot: no face was followed over at least two detections")
    duration = result["frames"] / result["fps"]
    figure, axes = plt.subplots(len(tracks), 1, figsize=(10, 1.6 * len(tracks) + 0.6), sharex=True, squeeze=False)
    palette = plt.get_cmap("tab10")
    for axis, track in zip(axes[:, 0], tracks):
        times = np.array(track["frames"]) / result["fps"]
        probabilities = np.array(track["expressions"]).T
        axis.stackplot(
            times, probabilities, colors=[palette(i) for i in range(len(EXPRESSIONS))], labels=EXPRESSIONS, step="post"
        )
        axis.set_xlim(0, duration)
        axis.set_ylim(0, 1)
        similarity = "" if track["similarity"] is None else f" ({track['similarity']:.3f})"
        axis.set_title(
            f"track {track['id']}: {track['identity']}{similarity}, {len(track['frames'])} detections",
            fontsize=9,
            loc="left",
        )
        axis.set_yticks([])
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
