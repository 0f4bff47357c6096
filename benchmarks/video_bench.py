"""Speed and memory of video analysis: frames/s and resident memory over a (looped, rescaled) clip.

    python benchmarks/video_bench.py CLIP [--height 720] [--detect-every N] [--loops K] [--gallery FOLDER]

Frames are decoded from the file (again for each loop) and resized to --height (aspect kept) before
the analysis, so a 360p clip gives a 720p input without writing one. Prints wall-clock and CPU
frames/s, and the resident memory after the first 10 s of input and at the end.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import cv2

from stra_face.gallery import open_gallery
from stra_face.tracks.analyzer import Identifier, Models, VideoOptions, VideoSession, enrol_photos
from stra_face.tracks.source import frames, probe


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def looped(path: Path, loops: int, height: int | None):
    info = probe(path)
    for _ in range(loops):
        for image in frames(path, info):
            if height and height != image.shape[0]:
                width = round(image.shape[1] * height / image.shape[0])
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
            yield image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--height", type=int, help="resize frames to this height (default: as decoded)")
    parser.add_argument("--detect-every", type=int, default=3)
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--gallery", type=Path, help="folder of photos to enrol")
    args = parser.parse_args()
    models = Models.load(providers=["CPUExecutionProvider"])
    info = probe(args.video)
    with tempfile.TemporaryDirectory() as folder:
        identifier = None
        if args.gallery:
            gallery = open_gallery(Path(folder) / "gallery.sqlite3")
            enrol_photos(gallery, models, args.gallery)
            identifier = Identifier.calibrated(gallery, models)
        session = VideoSession(models, info.fps, identifier, VideoOptions(detect_every=args.detect_every))
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        memory_at_10s = None
        for image in looped(args.video, args.loops, args.height):
            session.feed(image)
            if session.frame_count == round(10 * info.fps):
                memory_at_10s = rss_mib()
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        result = session.result()
    size = f"{image.shape[1]}x{image.shape[0]}"
    seconds = session.frame_count / info.fps
    print(
        f"{size} detect_every={args.detect_every}: {session.frame_count} frames ({seconds:.0f} s of video) in "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU: "
        f"{session.frame_count / wall:.1f} frames/s wall, {session.frame_count / cpu:.1f} frames/s per CPU-second"
    )
    print(
        f"memory: RSS {memory_at_10s if memory_at_10s is None else round(memory_at_10s)} MiB after 10 s of video, "
        f"{rss_mib():.0f} MiB at the end "
        f"(peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB); {len(result['tracks'])} tracks, "
        f"{sum(len(t['frames']) for t in result['tracks'])} observations kept"
    )


if __name__ == "__main__":
    main()
