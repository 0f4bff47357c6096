"""`stra-face enroll DIR --gallery G`: enrol identity folders DIR/<person>/<photo> into a gallery."""

from __future__ import annotations

from pathlib import Path

from stra_face.commands import common


def identity_photos(folder: Path) -> list[tuple[str, Path]]:
    """(person, photo) for every image in DIR/<person>/ (recursed below it); the folder name is the subject id."""
    if not folder.is_dir():
        raise common.InputError(f"not a folder: {folder} (expected DIR/<person>/<photo>)")
    photos = [
        (person.name, path)
        for person in sorted(p for p in folder.iterdir() if p.is_dir())
        for path, _ in common.image_files([str(person)])
    ]
    if not photos:
        raise common.InputError(f"no identity folders with images in {folder} (expected DIR/<person>/<photo>)")
    return photos


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "enroll",
        "Enrol every photo of DIR/<person>/ as a face of subject <person> (created when new) in the gallery. "
        "Prints a JSON summary; photos that cannot be enrolled (no face, several faces, unreadable) "
        "are reported and skipped (exit status 1).",
    )
    parser.add_argument("folder", metavar="DIR", help="a folder of identity folders: DIR/<person>/<photo>")
    parser.add_argument(
        "--gallery", required=True, metavar="G", help="SQLite file (created when missing) or postgresql:// DSN"
    )
    parser.add_argument(
        "--select",
        choices=("single", "largest"),
        default="single",
        help="single (default): a photo must show one face; largest: take its largest face",
    )
    parser.add_argument("--flip", action="store_true", default=None, help="also embed the mirrored faces")
    common.add_detection_options(parser)
    args = parser.parse_args(argv)

    def work() -> int:
        photos = identity_photos(Path(args.folder))
        from stra_face.people import Gallery

        enrolled, failed = [], []
        with Gallery(args.gallery, common.analyzer()) as gallery:
            for person, path in common.progress(photos, "enroll"):
                try:
                    answer = gallery.enroll(
                        person, path, select=args.select, flip=args.flip, **common.detection_options(args)
                    )
                    enrolled.append({"subject_id": person, "path": str(path), "face_id": answer["face"]["id"]})
                except Exception as error:
                    if common.user_error(error) is None:
                        raise
                    common.warn("enroll", f"skipped {path}: {common.user_error(error)}")
                    failed.append({"subject_id": person, "path": str(path), "error": common.error_entry(error)})
            subjects = gallery.subjects(limit=1)["total"]
        common.write_json({"gallery": args.gallery, "subjects": subjects, "enrolled": enrolled, "failed": failed}, None)
        return 1 if failed else 0

    common.run("enroll", work)
