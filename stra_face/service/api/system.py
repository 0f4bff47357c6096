"""Liveness, readiness, metrics and build information."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from stra_face.service.api.deps import State

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(description="ready or not_ready")
    checks: dict[str, bool | str]


@router.get("/health", response_model=Health, summary="liveness: the process answers (open without an API key)")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Readiness,
    summary="readiness: models loaded and the gallery reachable (open without an API key)",
    responses={503: {"model": Readiness, "description": "not ready: `checks` says what is missing"}},
)
async def ready(request: Request) -> JSONResponse:
    state = getattr(request.app.state, "service", None)
    checks = {"models": state is not None, "gallery": False}
    if state is not None:
        checks["expression_model"] = state.expression is not None  # optional: its routes answer 503 without it
    if state is not None:
        try:
            state.gallery.ping()
            checks["gallery"] = True
        except Exception as error:  # readiness reports the failure instead of raising it
            checks["gallery_error"] = str(error)
    ok = checks["models"] and checks["gallery"]
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (open without an API key: scrapers send none; counts and latencies only)",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}
    },
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


info_router = APIRouter(prefix="/v1", tags=["system"])


@info_router.get("/info", summary="models, their sha256 and ONNX Runtime providers in use, thresholds")
async def info(state: State) -> dict:
    return state.info()
