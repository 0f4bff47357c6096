"""`stra-face subjects --gallery G`: the subjects of a gallery and their faces (GET /v1/subjects, every page)."""

from __future__ import annotations

from stra_face.commands import common

PAGE = 100


def main(argv: list[str] | None = None) -> None:
    parser = common.parser("subjects", "List the gallery's subjects (oldest first) with their faces, as JSON.")
    parser.add_argument("--gallery", required=True, metavar="G", help="SQLite file or postgresql:// DSN")
    args = parser.parse_args(argv)

    def work() -> int:
        common.existing_gallery(args.gallery)
        from stra_face.people import Gallery

        with Gallery(args.gallery) as gallery:
            answer = gallery.subjects(limit=PAGE)
            while len(answer["subjects"]) < answer["total"]:
                answer["subjects"] += gallery.subjects(limit=PAGE, offset=len(answer["subjects"]))["subjects"]
        common.write_json(answer, None)
        return 0

    common.run("subjects", work)
