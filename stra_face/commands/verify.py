"""`stra-face verify A B`: do two photos show the same person? The JSON of POST /v1/verify."""

from __future__ import annotations

from stra_face.commands import common


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "verify",
        "Compare every face of image A with every face of image B; the best pair decides. "
        "Prints the JSON of POST /v1/verify (`verified`, `similarity`, `decision`, ...); "
        "exit status 0 whether or not they match.",
    )
    parser.add_argument("image1", help="image file A")
    parser.add_argument("image2", help="image file B")
    common.add_decision_options(parser)
    common.add_detection_options(parser)
    parser.add_argument("--flip", action="store_true", default=None, help="also embed the mirrored faces")
    args = parser.parse_args(argv)

    def work() -> int:
        common.image_files([args.image1, args.image2])  # a missing file is named before the models load
        analyzer = common.analyzer()
        common.check_decision(analyzer, args)
        answer = analyzer.verify(
            args.image1,
            args.image2,
            far=args.far,
            threshold=args.threshold,
            flip=args.flip,
            **common.detection_options(args),
        )
        common.write_json(answer, None)
        return 0

    common.run("verify", work)
