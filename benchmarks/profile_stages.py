"""CPU ms per request in each stage of the service, from a py-spy profile taken under load.

    stra-face serve --port 8765 &
    py-spy record --pid <server pid> --rate 100 --format raw -o verify.txt --duration 40 &
    python benchmarks/load_bench.py --url http://127.0.0.1:8765 --routes verify --clients 16 --duration 30
    python benchmarks/profile_stages.py verify.txt --requests <answered requests> [--seconds 30]

py-spy samples every busy thread `--rate` times a second (idle ones are left out), so a stage's samples
/ rate / requests is the CPU time it takes per request, summed over threads (two cores give up to two
CPU seconds per second). Each sample goes to the first stage, from the innermost frame outwards, whose
rule matches a frame; what no rule matches is the server's own work (uvicorn, Starlette, asyncio).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (stage, pattern on one frame "function (file:line)"), tried from the innermost frame outwards.
STAGES = [
    ("decode", r"\(.*stra_face/vision/decode\.py"),
    ("detect: P-Net, pyramid, R-Net crops", r"(^|\.)propose \("),
    ("detect: R-Net", r"(^|\.)run_rnet \("),
    ("detect: R-Net boxes, O-Net crops", r"(^|\.)refine \("),
    ("detect: O-Net", r"(^|\.)run_onet \("),
    ("detect: O-Net boxes", r"(^|\.)finish \("),
    ("quality gate", r"\(.*stra_face/vision/quality\.py"),
    ("align", r"\(.*stra_face/vision/align\.py"),
    ("embed", r"(^|\.)embed \(.*stra_face/vision/inference\.py"),
    ("expression", r"(^|\.)(predict|probabilities) \(.*stra_face/vision/inference\.py"),
    ("gallery search", r"\(.*stra_face/gallery/"),
    ("upload parsing (multipart)", r"\(.*(multipart|python_multipart|formparsers)"),
    (
        "serialization (JSON, pydantic)",
        r"\(.*(fastapi/encoders|fastapi/routing\.py.*serialize|pydantic|json/|orjson|responses\.py)",
    ),
]
RULES = [(stage, re.compile(pattern)) for stage, pattern in STAGES]
SERVING = "serving (uvicorn, Starlette, asyncio, thread hand-offs)"
# py-spy counts some blocked threads as busy: an innermost frame that waits (a lock, a queue, select) is no CPU.
WAITING = "waiting (locks, queues, select: not CPU, not in the total)"
WAITS = re.compile(
    r"^(Condition\.wait|Queue\.get|Event\.wait|Semaphore\.acquire|\w*Selector\.select|Thread\.join|sleep) \("
)


def stages(path: Path) -> Counter:
    """Samples per stage in one py-spy `--format raw` file (collapsed stacks: frames outermost first, then a count)."""
    counts: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if WAITS.search(frames[-1]):
            counts[WAITING] += int(count)
            continue
        stage = next((name for frame in reversed(frames) for name, rule in RULES if rule.search(frame)), SERVING)
        counts[stage] += int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path, nargs="+", help="py-spy --format raw files, one per route")
    parser.add_argument("--requests", type=int, nargs="+", required=True, help="answered requests during each profile")
    parser.add_argument("--rate", type=float, default=100, help="py-spy's --rate")
    args = parser.parse_args()
    if len(args.requests) != len(args.profiles):
        parser.error("one --requests count per profile")
    tables = [stages(path) for path in args.profiles]
    busy = [sum(table.values()) - table[WAITING] for table in tables]
    print("| stage | " + " | ".join(f"{path.stem} ms (share)" for path in args.profiles) + " |")
    print("| --- |" + " --- |" * len(args.profiles))
    for name in [name for name, _ in STAGES] + [SERVING]:
        cells = [
            f"{1000 * table[name] / args.rate / requests:.1f} ({100 * table[name] / total:.0f}%)"
            for table, total, requests in zip(tables, busy, args.requests)
        ]
        if any(table[name] for table in tables):
            print(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"**{1000 * total / args.rate / requests:.0f}**" for total, requests in zip(busy, args.requests)]
    print("| **all busy threads, ms per request** | " + " | ".join(totals) + " |")
    waits = [f"{1000 * table[WAITING] / args.rate / requests:.0f}" for table, requests in zip(tables, args.requests)]
    print(f"| {WAITING} | " + " | ".join(waits) + " |")


if __name__ == "__main__":
    main()
