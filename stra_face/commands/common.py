"""What the file and folder commands share: arguments, finding images, errors, output.

Standard library only at import time: `stra-face <command> --help` answers before numpy, OpenCV or
ONNX Runtime load; each command imports them in its `main`, once its arguments are parsed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class InputError(Exception):
    """Bad input named on the command line: reported in one line, exit status 2."""


def parser(command: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"stra-face {command}", description=description)


def add_detection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-face-size", type=int, default=None, help="smallest face side in pixels (default: the service's)"
    )
    parser.add_argument(
        "--detection-threshold", type=float, default=None, help="minimum detector score (default: the service's)"
    )


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--far", type=float, default=None, help="target false-accept rate (default: STRA_DEFAULT_FAR, 0.001)"
    )
    group.add_argument(
        "--threshold", type=float, default=None, help="explicit cosine-similarity threshold (overrides --far)"
    )


def check_decision(analyzer, args: argparse.Namespace):
    """The threshold --far / --threshold ask for: a bad --far fails before any image is read."""
    return analyzer.decision(args.far, args.threshold, override="pass --threshold")


def detection_options(args: argparse.Namespace) -> dict:
    return {"min_face_size": args.min_face_size, "detection_threshold": args.detection_threshold}


def image_files(paths: list[str]) -> list[tuple[Path, Path]]:
    """(file, name to report it by) for every image named or inside a named folder (recursed,
    sorted); a folder's images are named from the folder on. A missing path is an InputError."""
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found += [
                (f, f.relative_to(given.parent))
                for f in sorted(given.rglob("*"))
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            ]
        elif given.is_file():
            found.append((given, Path(given.name)))
        else:
            raise InputError(f"no such file or directory: {given}")
    return found


def existing_gallery(location: str) -> str:
    """A PostgreSQL DSN as given, or the path of a gallery file that exists (reading must not create one)."""
    if not location.startswith(("postgresql://", "postgres://")) and not Path(location).is_file():
        raise InputError(f"no gallery at {location} (fill one with `stra-face enroll DIR --gallery {location}`)")
    return location


def user_error(error: BaseException) -> str | None:
    """The one-line message of an error caused by the input (a file, an image, the gallery), else None."""
    if isinstance(error, InputError):  # before the imports below: arguments are checked before any model loads
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename}" if error.filename else str(error)
    from stra_face.analyzer import ModelUnavailable
    from stra_face.gallery import GalleryError
    from stra_face.vision.decode import ImageError
    from stra_face.vision.inference import ModesUnavailable
    from stra_face.vision.thresholds import ThresholdError

    if isinstance(error, (ImageError, GalleryError, ThresholdError)):
        return f"{error.message} ({error.code})"
    if isinstance(error, (ModelUnavailable, ModesUnavailable)):
        return str(error)
    return None


def error_entry(error: BaseException) -> dict:
    return {"code": getattr(error, "code", type(error).__name__), "message": user_error(error)}


def run(command: str, work: Callable[[], int]) -> None:
    """Run a command's work; input errors end it with `stra-face <command>: error: <message>` on stderr."""
    try:
        status = work()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        print(f"stra-face {command}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(status)


def warn(command: str, message: str) -> None:
    print(f"stra-face {command}: {message}", file=sys.stderr)


def progress(items: list, command: str) -> Iterator:
    """A tqdm bar on stderr, shown only when stderr is a terminal."""
    from tqdm import tqdm

    return iter(tqdm(items, desc=command, unit="image", file=sys.stderr, disable=None))


def write_json(value, out: str | None) -> None:
    """To the file `out`, or to stdout."""
    text = json.dumps(value, indent=1)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")


def analyzer():
    from stra_face.analyzer import default_analyzer

    return default_analyzer()
