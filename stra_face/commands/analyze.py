"""`stra-face analyze PATH...`: every face of every image (folders recursed): box, landmarks,
embedding, expression. JSON to stdout, or --json / --csv files; --draw writes annotated copies."""

from __future__ import annotations

import sys
from pathlib import Path

from stra_face.commands import common

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
BOX_COLOUR, POINT_COLOUR, TEXT_COLOUR = (0, 200, 0), (0, 0, 255), (255, 255, 255)  # BGR


def csv_header(expressions: tuple[str, ...]) -> list[str]:
    points = [f"{name}_{axis}" for name in LANDMARKS for axis in "xy"]
    return [
        "path",
        "face",
        "faces_found",
        "x1",
        "y1",
        "x2",
        "y2",
        "score",
        *points,
        "expression",
        *expressions,
        "error",
    ]


def csv_rows(entry: dict, expressions: tuple[str, ...]) -> list[list]:
    """One row per face; an image without faces (or that failed) gets one row with the face columns empty."""
    width = len(csv_header(expressions))
    if "error" in entry:
        return [[entry["path"]] + [""] * (width - 2) + [entry["error"]["message"]]]
    if not entry["faces"]:
        return [[entry["path"], "", 0] + [""] * (width - 3)]
    rows = []
    for index, face in enumerate(entry["faces"]):
        box, expression = face["box"], face["expression"]
        rows.append(
            [
                entry["path"],
                index,
                entry["faces_found"],
                *(round(box[k], 2) for k in ("x1", "y1", "x2", "y2")),
                round(face["score"], 5),
                *(round(v, 2) for point in face["landmarks"] for v in point),
                expression["dominant"],
                *(round(expression["probabilities"][name], 5) for name in expressions),
                "",
            ]
        )
    return rows


def write_csv(entries: list[dict], out: str, expressions: tuple[str, ...]) -> None:
    import csv

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(expressions))
        for entry in entries:
            writer.writerows(csv_rows(entry, expressions))


def draw(image, faces: list[dict]):
    """A BGR copy of the RGB `image` with each face's box, 5 landmarks and dominant expression."""
    import cv2

    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        box = face["box"]
        top_left, bottom_right = (round(box["x1"]), round(box["y1"])), (round(box["x2"]), round(box["y2"]))
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOUR, thickness)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (round(x), round(y)), thickness + 1, POINT_COLOUR, -1)
        expression = face["expression"]
        lines = [f"{expression['dominant']} {expression['probabilities'][expression['dominant']]:.2f}"]
        if "identity" in face:  # with --gallery: who it is (or unknown) above what they show
            lines.insert(0, (face["identity"] or "unknown").replace("_", " "))
        scale = 0.4 * thickness
        sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for line in lines]
        line_height = max(h + b for (_, h), b in sizes)
        width = max(w for (w, _), _ in sizes)
        x = min(top_left[0], canvas.shape[1] - width)  # labels stay inside the picture
        y = max(top_left[1] - line_height * len(lines), 0)
        cv2.rectangle(canvas, (x, y), (x + width, y + line_height * len(lines)), BOX_COLOUR, -1)
        for number, (line, ((_, height), _baseline)) in enumerate(zip(lines, sizes)):
            cv2.putText(
                canvas,
                line,
                (x, y + line_height * number + height),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                TEXT_COLOUR,
                thickness,
                cv2.LINE_AA,
            )
    return canvas


def name_faces(faces: list[dict], identified: list[dict]) -> None:
    """Adds `identity` (a subject id, or None for unknown) to each analysed face; the two answers come from
    the same detection pass over the same image, so a face is found again by its box."""
    by_box = {tuple(face["box"].values()): face["subject_id"] for face in identified}
    for face in faces:
        face["identity"] = by_box.get(tuple(face["box"].values()))


def save_drawing(canvas, out_dir: Path, name: Path) -> None:
    import cv2

    target = out_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), canvas):
        raise OSError(f"could not write {target}")


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "analyze",
        "Every face of every image (folders are searched recursively for .jpg .jpeg .png .webp .bmp): "
        "box, landmarks, embedding and expression, as POST /v1/analyze answers them. "
        "JSON to stdout unless --json or --csv.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    outputs = parser.add_mutually_exclusive_group()
    outputs.add_argument("--json", metavar="FILE", help="write the JSON here instead of stdout")
    outputs.add_argument(
        "--csv",
        metavar="FILE",
        help="write one row per face (box, score, landmarks, expression probabilities) here instead",
    )
    parser.add_argument(
        "--draw",
        metavar="DIR",
        help="also write each image with boxes, landmarks and expression labels drawn, under DIR",
    )
    parser.add_argument(
        "--modes", action="store_true", help="include the StRA mode maps of the expression model (JSON only)"
    )
    parser.add_argument("--flip", action="store_true", default=None, help="also embed the mirrored faces")
    parser.add_argument(
        "--gallery",
        metavar="G",
        help="also name each face from this gallery (as `stra-face identify` does): `identity`",
    )
    common.add_detection_options(parser)
    args = parser.parse_args(argv)

    def work() -> int:
        files = common.image_files(args.paths)
        if not files:
            raise common.InputError(f"no images ({', '.join(sorted(common.IMAGE_SUFFIXES))}) in {' '.join(args.paths)}")
        analyzer = common.analyzer()
        gallery = None
        if args.gallery:
            import stra_face

            gallery = stra_face.Gallery(common.existing_gallery(args.gallery), analyzer)
        entries, failed = [], 0
        for path, name in common.progress(files, "analyze"):
            try:
                image = analyzer.load(path)
                answer = analyzer.analyze(image, flip=args.flip, modes=args.modes, **common.detection_options(args))
                if gallery is not None:
                    name_faces(
                        answer["faces"],
                        gallery.identify(image, flip=args.flip, **common.detection_options(args))["faces"],
                    )
                if args.draw:
                    save_drawing(draw(image, answer["faces"]), Path(args.draw), name)
                entries.append({"path": str(path)} | answer)
            except Exception as error:
                if common.user_error(error) is None:
                    raise
                common.warn("analyze", f"skipped: {common.user_error(error)}")
                entries.append({"path": str(path), "error": common.error_entry(error)})
                failed += 1
        if args.csv:
            from stra_face.vision.preprocess import EXPRESSIONS

            write_csv(entries, args.csv, EXPRESSIONS)
        else:
            common.write_json(entries, args.json)
        faces = sum(len(e.get("faces", ())) for e in entries)
        if args.csv or args.json:
            print(f"{len(files) - failed} images, {faces} faces -> {args.csv or args.json}", file=sys.stderr)
        return 1 if failed else 0

    common.run("analyze", work)
