"""Per-frame accuracy on the Hamilton clip, tracked vs frame by frame, against labels made by eye.

    python benchmarks/video_eval.py ../shared/data/video/short_hamilton_clip.mp4 GALLERY_FOLDER [--detect-every N]

Identity: every face detected on a labelled frame is scored (who it is follows from the shot and the
face's position, read off the frames by eye; people not enrolled must be `unknown`). Expression: the
labelled person's face, against the expression read by eye. Tracked: the track's voted identity and
its smoothed expression; frame by frame: that detection's own gallery match and argmax.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from stra_face.gallery import open_gallery
from stra_face.tracks.analyzer import Identifier, Models, VideoOptions, analyze_file, enrol_photos
from stra_face.vision.preprocess import EXPRESSIONS

# Shots (cuts at frames 20, 82, 211): Miranda on stage (right) with Lacamoire at the piano (left);
# Lacamoire's profile close-up; Miranda's close-up; the audience, Obama in the middle (x 300-410).
MIRANDA, LACAMOIRE, OBAMA, UNKNOWN = "Lin Manuel Miranda", "Alex Lacamoire", "Barack Obama", "unknown"
# frame -> expression of the shot's main person, read by eye (every 9th frame from 4; at 58 no face shows).
EXPRESSION_LABELS = {
    4: "neutral",
    13: "neutral",
    22: "neutral",
    31: "neutral",
    40: "neutral",
    49: "neutral",
    67: "neutral",
    76: "neutral",
    85: "happy",
    94: "happy",
    103: "neutral",
    112: "neutral",
    121: "neutral",
    130: "neutral",
    139: "happy",
    148: "neutral",
    157: "surprise",
    166: "surprise",
    175: "neutral",
    184: "surprise",
    193: "neutral",
    202: "surprise",
    211: "happy",
    220: "happy",
    229: "happy",
    238: "happy",
    247: "happy",
    256: "happy",
    265: "happy",
}
LABELLED = sorted(EXPRESSION_LABELS) + [58]


def truth(frame: int, box) -> str:
    centre = (box[0] + box[2]) / 2
    if frame < 20:
        return MIRANDA if centre > 300 else LACAMOIRE
    if frame < 82:
        return LACAMOIRE
    if frame < 211:
        return MIRANDA
    return OBAMA if 300 <= centre <= 410 else UNKNOWN


def main_person(frame: int) -> str:
    return MIRANDA if frame < 20 or 82 <= frame < 211 else LACAMOIRE if frame < 82 else OBAMA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("gallery", type=Path, help="folder of photos: <name>/*.jpg")
    parser.add_argument("--detect-every", type=int, default=1)
    args = parser.parse_args()
    models = Models.load(providers=["CPUExecutionProvider"])
    seen = {}  # frame -> [(track, box, own name, own probabilities)] of the labelled frames

    def on_frame(image, result, session):
        if result.index in LABELLED:
            seen[result.index] = [
                (f.track, f.box, f.match.name if f.match and f.match.accepted else UNKNOWN, f.probabilities)
                for f in result.faces
            ]

    with tempfile.TemporaryDirectory() as folder:
        gallery = open_gallery(Path(folder) / "gallery.sqlite3")
        enrol_photos(gallery, models, args.gallery)
        _, result = analyze_file(
            args.video,
            models,
            Identifier.calibrated(gallery, models),
            VideoOptions(detect_every=args.detect_every),
            on_frame=on_frame,
        )
    tracks = {t["id"]: t for t in result["tracks"]}

    def tracked_expression(track_id: int, frame: int) -> str | None:
        track = tracks.get(track_id)
        if track is None:
            return None
        nearest = int(np.argmin(np.abs(np.array(track["frames"]) - frame)))
        return EXPRESSIONS[int(np.argmax(track["expressions"][nearest]))]

    scores = {key: [] for key in ("id_tracked", "id_frame", "expr_tracked", "expr_frame")}
    for frame in LABELLED:
        for track_id, box, own_name, probabilities in seen.get(frame, []):
            person = truth(frame, box)
            scores["id_tracked"].append(
                tracks[track_id]["identity"] == person if track_id in tracks else person == UNKNOWN
            )
            scores["id_frame"].append(own_name == person)
            if person == main_person(frame) and frame in EXPRESSION_LABELS:
                scores["expr_tracked"].append(tracked_expression(track_id, frame) == EXPRESSION_LABELS[frame])
                if probabilities is not None:
                    scores["expr_frame"].append(EXPRESSIONS[int(np.argmax(probabilities))] == EXPRESSION_LABELS[frame])
    print(f"detect_every={args.detect_every}: {len(LABELLED)} labelled frames")
    for key, values in scores.items():
        print(f"{key}: {np.mean(values):.3f} ({sum(values)}/{len(values)})")
    for track in result["tracks"]:
        print(
            f"track {track['id']}: {track['identity']} {track['similarity']} {track['start']}-{track['end']} s, "
            f"{len(track['frames'])} detections"
        )


if __name__ == "__main__":
    main()
