"""Prometheus metrics on a registry of the app's own (several apps in one process stay apart)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Label values must come from a fixed set: a client choosing them grows /metrics without bound."""
    return method if method in METHODS else "OTHER"


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stra_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "stra_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "stra_batch_faces",
            "faces per model call",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.faces = Counter("stra_faces_detected_total", "faces detected", registry=self.registry)
        self.unhandled = Counter(
            "stra_unhandled_exceptions_total",
            "requests that raised an unexpected exception (answered 500)",
            ["route", "exception"],
            registry=self.registry,
        )
        self.provider = Gauge(
            "stra_model_provider",
            "1 for the ONNX Runtime provider each model runs on",
            ["model", "provider"],
            registry=self.registry,
        )

    def count_unhandled(self, scope: Scope, error: BaseException) -> None:
        self.unhandled.labels(getattr(scope.get("route"), "path", "unmatched"), type(error).__name__).inc()


class MetricsMiddleware:
    """Counts and times every request by its route template (/v1/subjects/{subject_id}, not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        method = method_label(scope["method"])  # read now: HeadAsGetMiddleware inside answers HEAD as GET

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")  # the route's template, never the raw path
            self.metrics.requests.labels(template, method, str(status["code"])).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)
