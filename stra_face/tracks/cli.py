"""`stra-face video IN`: each person in a video as a track, named from a gallery, with an expression timeline."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stra-face video", description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, help="a video file OpenCV/FFmpeg can read (mp4, mkv, avi, webm, ...)")
    parser.add_argument(
        "--gallery",
        type=Path,
        help=(
            "a gallery (the service's SQLite file, STRA_GALLERY_PATH) or a folder of photos: <name>/*.jpg or <name>.jpg"
        ),
    )
    parser.add_argument(
        "--far",
        type=float,
        default=1e-3,
        help="false-accept rate of the calibrated identification threshold (default 1e-3)",
    )
    parser.add_argument("--threshold", type=float, help="cosine threshold instead of the calibrated one")
    parser.add_argument("--json", type=Path, help="write the tracks as JSON here")
    parser.add_argument("--csv", type=Path, help="write one row per track observation here")
    parser.add_argument("--draw", type=Path, help="write the video with boxes, names and expressions here (.mp4)")
    parser.add_argument(
        "--plot", type=Path, help="write the expression timeline of each track here (.png; needs matplotlib)"
    )
    parser.add_argument(
        "--detect-every", type=int, default=3, help="detect faces on every N-th frame, track in between (default 3)"
    )
    parser.add_argument("--max-seconds", type=float, help="read only the first S seconds")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    args = parser.parse_args(argv)
    if args.detect_every < 1:
        parser.error("--detect-every must be at least 1")
    if not args.video.is_file():
        parser.error(f"no such file: {args.video}")
    if args.gallery is not None and not args.gallery.exists():
        parser.error(f"no such gallery file or folder: {args.gallery}")
    return args


def open_identifier(args, models, workdir: Path):
    from stra_face.gallery import open_gallery
    from stra_face.tracks.analyzer import Identifier, enrol_photos

    if args.gallery is None:
        return None
    if args.gallery.is_dir():
        gallery = open_gallery(workdir / "gallery.sqlite3")
        enrolled = enrol_photos(gallery, models, args.gallery)
        print("enrolled: " + ", ".join(f"{name} ({n} photo{'s' * (n != 1)})" for name, n in enrolled.items()))
    else:
        gallery = open_gallery(args.gallery)
    if args.threshold is not None:
        return Identifier(gallery, models.embedder.sha256, args.threshold)
    return Identifier.calibrated(gallery, models, args.far)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)  # before the imports below (ONNX Runtime, OpenCV): --help answers at once
    from tqdm import tqdm

    from stra_face.tracks.analyzer import Models, VideoOptions, analyze_file
    from stra_face.tracks.output import Drawer, plot_timeline, write_csv
    from stra_face.tracks.source import VideoError, VideoLimits, probe

    limits = VideoLimits(truncate_seconds=args.max_seconds)
    try:
        info = probe(args.video, limits)  # before the models load: a bad file fails at once
    except VideoError as error:
        raise SystemExit(f"stra-face video: {error.message}") from None
    models = Models.load(intra_op_threads=args.threads)
    with tempfile.TemporaryDirectory() as workdir:
        try:
            identifier = open_identifier(args, models, Path(workdir))
        except ValueError as error:  # a photo that cannot be read, a model without calibration
            raise SystemExit(f"stra-face video: {getattr(error, 'message', error)}") from None
        total = info.frames if args.max_seconds is None else min(info.frames, int(args.max_seconds * info.fps))
        drawer = Drawer(args.draw, info.fps) if args.draw else None
        with tqdm(total=total or None, unit="frame", desc=args.video.name) as bar:

            def on_frame(image, result, session):
                if drawer is not None:
                    drawer(image, result, session)
                bar.update(1)

            try:
                _, result = analyze_file(
                    args.video, models, identifier, VideoOptions(detect_every=args.detect_every), limits, on_frame
                )
            except VideoError as error:
                raise SystemExit(f"stra-face video: {error.message}") from None
            finally:
                if drawer is not None:
                    drawer.close()
    for track in result["tracks"]:
        similarity = "" if track["similarity"] is None else f" (cosine {track['similarity']:.3f})"
        dominant = ", ".join(f"{d['expression']} {d['start']:.1f}-{d['end']:.1f}s" for d in track["dominant"])
        print(
            f"track {track['id']}: {track['identity']}{similarity}, {track['start']:.1f}-{track['end']:.1f}s, "
            f"{len(track['frames'])} detections; {dominant}"
        )
    if args.json:
        args.json.write_text(json.dumps(result))
    if args.csv:
        write_csv(result, args.csv)
    if args.plot:
        plot_timeline(result, args.plot)
