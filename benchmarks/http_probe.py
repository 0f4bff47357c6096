"""Issue 20's HTTP reproductions against a running server; prints what each answered and how long
/health took meanwhile. `python benchmarks/http_probe.py http://127.0.0.1:8000 [--api-key K]`
(the server must be one you may send hostile requests to: a fresh instance)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx


def health_while(url: str, attack) -> tuple[str, float]:
    """(what the attack got, the slowest /health while it ran)."""
    result: list[str] = []

    def run():
        try:
            result.append(str(attack().status_code))
        except httpx.HTTPError as error:
            result.append(type(error).__name__)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.2)
    slowest = 0.0
    with httpx.Client(timeout=120) as client:
        while thread.is_alive() or slowest == 0.0:
            started = time.perf_counter()
            try:
                client.get(url + "/health")
            except httpx.TimeoutException:
                return "still running", 120.0
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.05)
    return result[0], slowest


def raw(url: str, data: bytes) -> str:
    """The status line (and whether the server closed) for raw bytes on a fresh connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
            time.sleep(0.3)
            sock.setblocking(False)
            try:
                closed = sock.recv(65536) == b""
            except BlockingIOError:
                closed = False
        except (ConnectionResetError, TimeoutError) as error:
            return f"{type(error).__name__}"
    return answer.split(b"\r\n")[0].decode() + (" (closed)" if closed else " (kept open)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument(
        "--sizes",
        default="39,78,256",
        help="KiB of the hostile bodies (a server with the quadratic scan takes minutes on 256)",
    )
    parser.add_argument(
        "--api-key", help="the server's key, for the requests that need one (the stall is measured without)"
    )
    args = parser.parse_args()
    url, keyed = args.url.rstrip("/"), {"x-api-key": args.api_key} if args.api_key else {}
    json_type = {"content-type": "application/json"}
    for kib in map(int, args.sizes.split(",")):
        body = b'"' + b'\\"' * (kib * 512 - 1)
        got, slowest = health_while(
            url, lambda body=body: httpx.post(url + "/v1/subjects", content=body, headers=json_type, timeout=600)
        )
        print(f"1. {kib} KiB escaped-quote body: answered {got}; slowest /health {slowest * 1000:.0f} ms")
    print(
        "1. Expect: 100-continue, no key:",
        raw(
            url,
            b"POST /v1/subjects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        ),
    )
    nested = b'{"image": ' + b"[" * 50000 + b"]" * 50000 + b"}"
    two = httpx.post(
        url + "/v1/detect",
        content=nested,
        headers=[("content-type", "application/json"), ("content-type", "text/plain"), *keyed.items()],
    )
    print("2. two Content-Types + 50,000 deep:", two.status_code, two.text[:100])
    utf16 = ('{"image": "é", "x": ' + "[" * 50000 + "]" * 50000 + "}").encode("utf-16")
    print(
        "2. UTF-16 + 50,000 deep:", httpx.post(url + "/v1/detect", content=utf16, headers=json_type | keyed).status_code
    )
    poison = httpx.post(
        url + "/v1/subjects", content='{"id": "poison", "metadata": {"k": "\\ud800"}}', headers=json_type | keyed
    )
    print(
        "3. lone surrogate:",
        poison.status_code,
        "then GET /v1/subjects/poison:",
        httpx.get(url + "/v1/subjects/poison", headers=keyed).status_code,
        "GET /v1/subjects:",
        httpx.get(url + "/v1/subjects", headers=keyed).status_code,
    )
    httpx.delete(url + "/v1/subjects/poison", headers=keyed)
    with httpx.Client(base_url=url) as client:
        before = len(client.get("/metrics").content)
        for i in range(3000):
            client.request(f"M{i}", "/v1/subjects")
        print(
            f"6. /metrics after 3,000 made-up methods: {before / 1024:.0f} -> "
            f"{len(client.get('/metrics').content) / 1024:.0f} KiB"
        )
    print(
        "7. Content-Length + Transfer-Encoding:",
        raw(
            url,
            b"POST /v1/subjects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    )
    print("8. 20 KiB header:", raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"))
    print(
        "8. 5,000 headers:",
        raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(5000)) + b"\r\n"),
    )
    print("8. 100 KiB URL:", raw(url, b"GET /health?q=" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
    print("9. HEAD /health:", httpx.head(url + "/health").status_code)
    print("10. HTTP/3.0:", raw(url, b"GET /health HTTP/3.0\r\nHost: x\r\n\r\n"))
    started = time.monotonic()
    chunk = raw(
        url,
        b"POST /v1/subjects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{",
    )
    print(f"10. chunk declaring 2^64 bytes: {chunk} after {time.monotonic() - started:.1f} s")
    redirect = httpx.get(url + "/v1/subjects/", headers={"host": "evil.example"} | keyed)
    print("10. trailing-slash redirect Location:", redirect.status_code, redirect.headers.get("location"))


if __name__ == "__main__":
    main()
