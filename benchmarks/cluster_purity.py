"""How well `stra-face cluster` groups the labelled photos of ../shared/data/faces into people.

    stra-face cluster ../shared/data/faces --out clusters.json [--linkage average]
    python benchmarks/cluster_purity.py clusters.json

Identities: labels.tsv (rows naming one person) and the person folders under more/ (more/bbt/images/
<person>, more/test_images*/<person>). Only the largest face of such a photo is scored (a photo of one
person may show others in the background); faces of group photos and unlabelled ones are left out.
Prints purity (share of scored faces that belong to their cluster's majority person, singletons
count as pure), pairwise precision and recall (pairs of scored faces put together that are the same
person / same-person pairs put together), and clusters vs people.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from collections import Counter
from pathlib import Path

FACES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces").resolve()
PERSON_FOLDERS = ("more/bbt/images", "more/test_images", "more/test_images_aligned")


def identities(root: Path) -> dict[str, str]:
    """Path relative to root -> person."""
    with open(root / "labels.tsv", newline="") as handle:
        known = {row["path"]: row["identity"] for row in csv.DictReader(handle, delimiter="\t")}
    known = {path: person for path, person in known.items() if not person.startswith("MULTI") and person != "unknown"}
    for folder in PERSON_FOLDERS:
        for photo in (root / folder).glob("*/*"):
            known[str(photo.relative_to(root))] = photo.parent.name
    return known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clusters", help="the JSON written by `stra-face cluster ../shared/data/faces --out FILE`")
    parser.add_argument("--faces", default=str(FACES), help="the folder that was clustered")
    args = parser.parse_args()
    root = Path(args.faces).resolve()
    result = json.loads(Path(args.clusters).read_text())
    people = identities(root)
    groups = [c["faces"] for c in result["clusters"]] + [[face] for face in result["singletons"]]
    scored = []  # per group: the people of its scored faces
    for group in groups:
        names = [people.get(str(Path(f["path"]).resolve().relative_to(root))) for f in group if f["face"] == 0]
        scored.append([n for n in names if n is not None])
    total = sum(map(len, scored))
    purity = sum(Counter(names).most_common(1)[0][1] for names in scored if names) / total
    together = [(a == b) for names in scored for a, b in itertools.combinations(names, 2)]
    flat = [n for names in scored for n in names]
    same_pairs = sum(a == b for a, b in itertools.combinations(flat, 2))
    print(
        f"linkage {result['linkage']}, threshold {result['threshold']:.4f} (FAR {result['far']}), "
        f"{result['faces']} faces in {result['images']} images"
    )
    print(
        f"scored faces {total} of {len(set(flat))} people; "
        f"clusters {len(result['clusters'])} + singletons {len(result['singletons'])}"
    )
    print(
        f"purity {purity:.3f}; pairwise precision {sum(together) / max(1, len(together)):.3f} "
        f"({sum(together)}/{len(together)}), "
        f"recall {sum(together) / max(1, same_pairs):.3f} ({sum(together)}/{same_pairs})"
    )


if __name__ == "__main__":
    main()
