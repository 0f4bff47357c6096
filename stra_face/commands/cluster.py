"""`stra-face cluster DIR`: group the faces of unlabelled photos into people.

Agglomerative clustering (scikit-learn) of the face embeddings under cosine distance, stopped at
the verification threshold: two groups join only while their linkage distance is below
1 - threshold (the calibrated threshold of the default FAR, unless --far / --threshold say
otherwise). With `complete` linkage every two faces of a cluster would verify as one person; the
default `average` joins groups whose faces verify on average, which keeps more photos of one person
together at the cost of an occasional wrong merge."""

from __future__ import annotations

from stra_face.commands import common

LINKAGES = ("average", "complete", "single")


def cluster_labels(embeddings, distance_threshold: float, linkage: str):
    """A cluster label per row of unit `embeddings` (N, D)."""
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering

    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage=linkage, distance_threshold=distance_threshold
    )
    return model.fit_predict(embeddings)


def grouped(faces: list[dict], labels) -> tuple[list[dict], list[dict]]:
    """(clusters of two or more faces, largest first; faces alone)."""
    members: dict[int, list[dict]] = {}
    for face, label in zip(faces, labels):
        members.setdefault(int(label), []).append(face)
    groups = sorted((m for m in members.values() if len(m) > 1), key=len, reverse=True)
    clusters = [{"id": index, "size": len(group), "faces": group} for index, group in enumerate(groups)]
    return clusters, [m[0] for m in members.values() if len(m) == 1]


def main(argv: list[str] | None = None) -> None:
    parser = common.parser(
        "cluster",
        __doc__.split("\n\n")[0].split(": ", 1)[1] + " Every face of every image (folders recursed) is one item; "
        "the JSON lists clusters (two or more faces) and singletons.",
    )
    parser.add_argument("paths", nargs="+", metavar="DIR", help="folders (or files) of photos")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here instead of stdout")
    parser.add_argument(
        "--linkage",
        choices=LINKAGES,
        default="average",
        help="how the distance of two groups is measured (default average)",
    )
    common.add_decision_options(parser)
    common.add_detection_options(parser)
    args = parser.parse_args(argv)

    def work() -> int:
        import numpy as np

        files = common.image_files(args.paths)
        analyzer = common.analyzer()
        chosen = common.check_decision(analyzer, args)
        faces, embeddings, failed = [], [], 0
        for path, _ in common.progress(files, "cluster"):
            try:
                result = analyzer.run(path, embed=True, **common.detection_options(args))
            except Exception as error:
                if common.user_error(error) is None:
                    raise
                common.warn("cluster", f"skipped: {common.user_error(error)}")
                failed += 1
                continue
            for index, detection in enumerate(result.detections):
                faces.append({"path": str(path), "face": index, "box": [round(float(v), 2) for v in detection.box]})
            if result.detections:
                embeddings.append(result.embeddings)
        vectors = np.concatenate(embeddings) if embeddings else np.empty((0, analyzer.embedder.dim), np.float32)
        clusters, singletons = grouped(faces, cluster_labels(vectors, 1 - chosen.threshold, args.linkage))
        common.write_json(
            {
                "threshold": chosen.threshold,
                "far": chosen.far,
                "distance_threshold": 1 - chosen.threshold,
                "linkage": args.linkage,
                "images": len(files) - failed,
                "faces": len(faces),
                "clusters": clusters,
                "singletons": singletons,
            },
            args.out,
        )
        return 1 if failed else 0

    common.run("cluster", work)
