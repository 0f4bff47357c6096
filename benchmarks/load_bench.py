"""Sustained load on the running service: N concurrent clients for a fixed time, real photos.

    stra-face serve &
    python benchmarks/load_bench.py --url http://127.0.0.1:8000 --clients 32 64 --duration 60

Every client loops over verify, analyze and identify (in turn, starting at a different route per
client) with the photos in ../shared/data/faces/examples, for `--duration` seconds per level (a
503 is followed by the Retry-After wait, as a well-behaved client would). Prints
per level and route: requests, errors by status code, p50/p95/p99 latency, and the server's RSS at
the start, its peak, and at the end of each round (`--rounds` > 1 repeats the levels, to see whether
memory keeps climbing). The server's RSS is read with psutil from the process listening on the port
(or `--pid`), so run it on the server's machine.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import psutil
import requests

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"
ROUTES = ("verify", "analyze", "identify")


def server_process(url: str, pid: int | None) -> psutil.Process | None:
    if pid:
        return psutil.Process(pid)
    port = urlparse(url).port or 80
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return psutil.Process(connection.pid)
    return None


def rss(process: psutil.Process | None) -> int:
    if process is None:
        return 0
    return process.memory_info().rss + sum(child.memory_info().rss for child in process.children(recursive=True))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_level(
    url: str,
    clients: int,
    duration: float,
    photos: list[bytes],
    decision: str,
    headers: dict,
    process,
    route_names: tuple[str, ...] = ROUTES,
) -> dict:
    stop = time.monotonic() + duration
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    peak = {"rss": rss(process)}
    start_rss = peak["rss"]

    def client(index: int) -> None:
        session = requests.Session()
        routes = itertools.islice(itertools.cycle(route_names), index % len(route_names), None)
        images = itertools.cycle(photos[index % len(photos) :] + photos[: index % len(photos)])
        while time.monotonic() < stop:
            route = next(routes)
            first, second = next(images), next(images)
            if route == "verify":
                path, files = "/v1/verify" + decision, {"image1": ("a.jpg", first), "image2": ("b.jpg", second)}
            elif route == "identify":
                path, files = "/v1/identify" + decision, {"image": ("a.jpg", first)}
            else:
                path, files = "/v1/analyze", {"image": ("a.jpg", first)}
            started = time.perf_counter()
            retry_after = 0.0
            try:
                response = session.post(url + path, files=files, headers=headers, timeout=300)
                status = response.status_code
                if status == 503:  # a well-behaved client waits as told before its next request
                    retry_after = float(response.headers.get("retry-after", 0) or 0)
            except requests.RequestException:
                status = 0  # connection error
            with lock:
                results.append((route, status, time.perf_counter() - started))
            time.sleep(min(retry_after, max(0.0, stop - time.monotonic())))

    def sample() -> None:
        while time.monotonic() < stop + 1:
            peak["rss"] = max(peak["rss"], rss(process))
            time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)] + [threading.Thread(target=sample)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "clients": clients,
        "results": results,
        "rss_start": start_rss,
        "rss_peak": peak["rss"],
        "rss_end": rss(process),
        "duration": duration,
    }


def report(level: dict) -> None:
    results = level["results"]
    answered, seconds, mib = sum(200 <= r[1] < 300 for r in results), level["duration"], 2**20
    print(
        f"\n## {level['clients']} clients, {seconds:g} s: {len(results)} requests ({len(results) / seconds:.1f}/s), "
        f"{answered} answered 200 ({answered / seconds:.1f}/s), RSS start {level['rss_start'] / mib:.0f} MiB, "
        f"peak {level['rss_peak'] / mib:.0f} MiB, end {level['rss_end'] / mib:.0f} MiB"
    )
    print("| route | requests | ok | errors by code | p50 ms | p95 ms | p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for route in (*sorted({r[0] for r in results}, key=ROUTES.index), "all"):
        rows = [r for r in results if route in ("all", r[0])]
        ok = [r[2] for r in rows if 200 <= r[1] < 300]
        errors = Counter(r[1] for r in rows if not 200 <= r[1] < 300)
        latencies = [r[2] * 1000 for r in rows]
        error_text = ", ".join(f"{code or 'conn'}: {n}" for code, n in sorted(errors.items())) or "0"
        median = statistics.median(latencies) if latencies else float("nan")
        print(
            f"| {route} | {len(rows)} | {len(ok)} | {error_text} | {median:.0f} | "
            f"{percentile(latencies, 0.95):.0f} | {percentile(latencies, 0.99):.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument(
        "--routes", nargs="+", choices=ROUTES, default=list(ROUTES), help="the routes each client loops over"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat all levels; RSS per round shows whether memory keeps climbing"
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="explicit cosine threshold (when the model has no calibration)"
    )
    parser.add_argument("--api-key", default=None)
    parser.add_argument(
        "--pid", type=int, default=None, help="server process id (default: the process listening on the URL's port)"
    )
    parser.add_argument("--photos", type=Path, default=FACES / "examples")
    args = parser.parse_args()

    photos = [
        p.read_bytes()
        for p in sorted(args.photos.glob("*"))
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stat().st_size < 2**20
    ]
    if not photos:
        raise SystemExit(f"no photos in {args.photos} (see ../shared/data/README.md)")
    headers = {"x-api-key": args.api_key} if args.api_key else {}
    decision = "" if args.threshold is None else f"?threshold={args.threshold}"
    process = server_process(args.url, args.pid)
    print(
        f"{len(photos)} photos from {args.photos}; "
        f"server pid {process.pid if process else 'unknown (RSS not measured)'}"
    )
    # identify needs a gallery: one subject per photo (409s on a second run are fine).
    for index, data in enumerate(photos):
        requests.post(args.url + "/v1/subjects", json={"id": f"load-{index}"}, headers=headers, timeout=30)
        requests.post(
            args.url + f"/v1/subjects/load-{index}/faces?select=largest",
            files={"image": ("a.jpg", data)},
            headers=headers,
            timeout=300,
        )
    for round_index in range(args.rounds):
        for clients in args.clients:
            level = run_level(args.url, clients, args.duration, photos, decision, headers, process, tuple(args.routes))
            report(level)
        print(f"\nround {round_index + 1}: server RSS {rss(process) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
