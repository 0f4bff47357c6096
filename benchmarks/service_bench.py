"""Latency and throughput of the running service, per route, at several concurrency levels.

    stra-face serve &                                   # or any deployed instance
    python benchmarks/service_bench.py --url http://127.0.0.1:8000 --concurrency 1 8 32

Each level sends `--requests` requests per route from that many threads (a warm-up request per
route first) and prints p50/p95 latency and requests per second as a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from tqdm import tqdm

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"


def routes(single: bytes, group: bytes, threshold: float | None) -> dict[str, tuple[str, dict]]:
    decision = "" if threshold is None else f"?threshold={threshold}"
    return {
        "detect (1 face)": ("/v1/detect", {"image": single}),
        "embed (1 face)": ("/v1/embed", {"image": single}),
        "expression (1 face)": ("/v1/expression", {"image": single}),
        "analyze (1 face)": ("/v1/analyze", {"image": single}),
        "analyze (6 faces)": ("/v1/analyze", {"image": group}),
        "verify (1 vs 1)": ("/v1/verify" + decision, {"image1": single, "image2": single}),
        "identify (1 face)": ("/v1/identify" + decision, {"image": single}),
    }


def measure(url: str, path: str, files: dict, concurrency: int, count: int, headers: dict) -> dict:
    session = requests.Session()

    def call(_):
        start = time.perf_counter()
        response = session.post(
            url + path, files={k: ("image.jpg", v) for k, v in files.items()}, headers=headers, timeout=300
        )
        elapsed = time.perf_counter() - start
        return elapsed, response.status_code

    call(0)  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(call, range(count)))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    errors = sum(r[1] >= 400 for r in results)
    return {
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "rps": count / wall,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--requests", type=int, default=0, help="per route and level (default: max(16, 2 x concurrency))"
    )
    parser.add_argument("--single", type=Path, default=FACES / "examples" / "obama-480p.jpg")
    parser.add_argument("--group", type=Path, default=FACES / "more" / "insightface" / "t1.jpg")
    parser.add_argument(
        "--threshold", type=float, help="explicit verify/identify threshold (when the model has no calibration)"
    )
    parser.add_argument("--api-key")
    args = parser.parse_args()
    headers = {"x-api-key": args.api_key} if args.api_key else {}
    info = requests.get(args.url + "/v1/info", headers=headers, timeout=30).json()
    providers = {name: model["providers"][0] for name, model in info["models"].items()}
    # identify needs a subject in the gallery
    requests.post(args.url + "/v1/subjects", json={"id": "bench"}, headers=headers, timeout=30)
    requests.post(
        args.url + "/v1/subjects/bench/faces", files={"image": args.single.read_bytes()}, headers=headers, timeout=60
    )

    table = routes(args.single.read_bytes(), args.group.read_bytes(), args.threshold)
    rows = []
    for concurrency in args.concurrency:
        count = args.requests or max(16, 2 * concurrency)
        for name, (path, files) in tqdm(table.items(), desc=f"concurrency {concurrency}"):
            rows.append((name, concurrency, measure(args.url, path, files, concurrency, count, headers)))
    print(f"\nproviders: {providers}\n")
    print("| route | concurrency | p50 ms | p95 ms | req/s | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, concurrency, result in rows:
        print(
            f"| {name} | {concurrency} | {result['p50_ms']:.0f} | {result['p95_ms']:.0f} | {result['rps']:.2f} | "
            f"{result['errors']} |"
        )


if __name__ == "__main__":
    main()
