"""`stra-face identify PATH... --gallery G`: who is in these photos? The JSON of POST /v1/identify per image."""

from __future__ import annotations

from stra_face.commands import common


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "identify",
        "For every face of every image (folders recursed), the subject it is or unknown (open set: the "
        "threshold for --fpir over the gallery's size), and the gallery's best subjects. JSON list to stdout: "
        "per image its path and the answer of POST /v1/identify "
        '(an image without a face has "faces": []).',
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    parser.add_argument(
        "--gallery", required=True, metavar="G", help="SQLite file or postgresql:// DSN filled by `stra-face enroll`"
    )
    parser.add_argument("--top-k", type=int, default=5, help="subjects per face (default 5)")
    parser.add_argument("--json", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument("--flip", action="store_true", default=None, help="also embed the mirrored faces")
    parser.add_argument(
        "--fpir",
        type=float,
        default=None,
        help=(
            "false-positive identification rate: how often someone not enrolled may be matched "
            "(default: STRA_DEFAULT_FPIR, 0.01)"
        ),
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="explicit cosine-similarity threshold (overrides --fpir)"
    )
    common.add_detection_options(parser)
    args = parser.parse_args(argv)

    def work() -> int:
        files = common.image_files(args.paths)
        from stra_face.people import Gallery
        from stra_face.vision.decode import ImageError

        common.existing_gallery(args.gallery)
        entries, failed = [], 0
        with Gallery(args.gallery, common.analyzer()) as gallery:
            for path, _ in common.progress(files, "identify"):
                try:
                    answer = gallery.identify(
                        path,
                        top_k=args.top_k,
                        fpir=args.fpir,
                        threshold=args.threshold,
                        flip=args.flip,
                        **common.detection_options(args),
                    )
                except ImageError as error:
                    if error.code != "no_face":
                        common.warn("identify", f"skipped: {error.message}")
                        entries.append({"path": str(path), "error": common.error_entry(error)})
                        failed += 1
                        continue
                    answer = {"faces_found": 0, "truncated": False, "faces": []}
                entries.append({"path": str(path)} | answer)
        common.write_json(entries, args.json)
        return 1 if failed else 0

    common.run("identify", work)
