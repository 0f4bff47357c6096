"""StRA-Face: face detection, verification, identification and expression recognition.

    import stra_face as sf
    sf.verify("a.jpg", "b.jpg")["verified"]
    sf.analyze("group.jpg")["faces"]  # box, landmarks, embedding, expression of every face
    with sf.Gallery("people.sqlite3") as gallery:
        gallery.enroll("obama", "obama.jpg")
        gallery.identify("group.jpg")
        for frame in (run := sf.video("clip.mp4", gallery=gallery)):  # per frame: faces with track ids
            ...
        run.result()["tracks"]  # each person a track: named, with an expression timeline

The functions share one `FaceAnalyzer`, created on first use (models load once); importing this
package loads nothing heavy. See docs/python-api-and-cli.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FaceAnalyzer", "Gallery", "analyze", "detect", "embed", "expression", "verify", "video"]


def verify(image1, image2, **options) -> dict:
    """Do the two images show the same person? ~ POST /v1/verify (`verified`, `similarity`, `decision`, ...)."""
    return _analyzer().verify(image1, image2, **options)


def analyze(image, **options) -> dict:
    """Every face: box, landmarks, embedding, expression (`modes=True` adds StRA mode maps). ~ POST /v1/analyze."""
    return _analyzer().analyze(image, **options)


def detect(image, **options) -> dict:
    """Every face: box, score, 5 landmarks. ~ POST /v1/detect."""
    return _analyzer().detect(image, **options)


def embed(image, **options) -> dict:
    """Every face: L2-normalised embedding. ~ POST /v1/embed."""
    return _analyzer().embed(image, **options)


def expression(image, **options) -> dict:
    """Every face: 7-class expression probabilities. ~ POST /v1/expression."""
    return _analyzer().expression(image, **options)


def video(path, gallery=None, **options):
    """A video, frame by frame: iterate for each frame's faces (track ids, names so far, expression),
    `.result()` for the tracks. ~ POST /v1/video. Options: far, threshold, detect_every, max_seconds."""
    from stra_face.tracks.api import VideoRun

    return VideoRun(path, gallery.analyzer if gallery is not None else _analyzer(), gallery, **options)


def _analyzer():
    from stra_face.analyzer import default_analyzer

    return default_analyzer()


def __getattr__(name: str):
    """`FaceAnalyzer` and `Gallery` are imported on first access (they bring numpy and ONNX Runtime)."""
    if name == "FaceAnalyzer":
        from stra_face.analyzer import FaceAnalyzer

        return FaceAnalyzer
    if name == "Gallery":
        from stra_face.people import Gallery

        return Gallery
    raise AttributeError(f"module 'stra_face' has no attribute {name!r}")
