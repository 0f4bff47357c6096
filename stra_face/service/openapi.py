"""The OpenAPI document says what the service does: every error a route can answer, in one shape.

FastAPI documents what the routes declare; the guards that hold for every route (request body
limits, API keys, admission, the one error shape) are added here from the routes' own features,
so a new route is documented like the others without repeating the list.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import compile_path

from stra_face.service.schemas import ErrorResponse

ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
REASONS = {
    400: "invalid JSON (malformed, or nested deeper than 32 levels) or a malformed multipart body",
    401: "API keys are configured and x-api-key is missing",
    403: "the x-api-key is not valid",
    404: "no such subject or face",
    409: "the subject already exists",
    408: "the request body did not arrive within STRA_BODY_TIMEOUT_S",
    413: "the request body or an image is over its limit, or an image has too many pixels",
    415: "not multipart/form-data or JSON, or not an image in a supported format",
    422: "invalid parameters or body, an image that cannot be decoded, or no face where one is needed",
    503: "busy (Retry-After says when to retry), or the model this route needs is missing or uncalibrated",
}


ROUTE_SPECIFIC = {404, 409, 503}  # kept as the routes declare them (/ready: 503 with its checks)


def _error(status: int) -> dict:
    return {"description": REASONS[status], "content": {"application/json": {"schema": ERROR}}}


def _errors_of(path: str, operation: dict) -> set[int]:
    statuses = {422} if operation.get("parameters") or operation.get("requestBody") else set()
    if operation.get("security"):
        statuses |= {401, 403}
    body = operation.get("requestBody")
    if body:
        statuses |= {400, 408, 413}
        if "multipart/form-data" in body.get("content", {}):  # an image route
            statuses |= {415, 422, 503}
    if "{subject_id}" in path:
        statuses.add(404)
    if path.startswith("/v1/subjects") or path == "/v1/identify":
        statuses.add(503)  # the gallery's database unreachable (PostgreSQL)
    return statuses


def document_errors(schema: dict) -> dict:
    schema.setdefault("components", {}).setdefault("schemas", {})["ErrorResponse"] = ErrorResponse.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schema["components"]["schemas"].update(
        ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs", {})
    )
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            errors = _errors_of(path, operation)
            for status in [s for s in responses if s.isdigit() and int(s) >= 400 and int(s) not in ROUTE_SPECIFIC]:
                if int(status) not in errors:
                    del responses[status]  # declared by a shared list, but this route cannot answer it
            for status in errors:
                responses[str(status)] = _error(status)
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 shape, never sent here
        schema["components"]["schemas"].pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi


def documented_operations(app: FastAPI) -> list[tuple[re.Pattern, dict[str, dict]]]:
    """(path regex, {METHOD: operation}) for every documented path, from the app's own OpenAPI document."""
    cached = getattr(app.state, "documented_operations", None)
    if cached is None:
        cached = [
            (compile_path(path)[0], {m.upper(): op for m, op in operations.items()})
            for path, operations in app.openapi()["paths"].items()
        ]
        app.state.documented_operations = cached
    return cached


def operations_for(app: FastAPI, path: str) -> dict[str, dict] | None:
    for regex, operations in documented_operations(app):
        if regex.match(path):
            return operations
    return None


def needs_api_key(app: FastAPI):
    """needs_key(scope) -> bool: the request's operation declares the x-api-key security scheme."""

    def needs_key(scope) -> bool:
        operation = (operations_for(app, scope["path"]) or {}).get(scope["method"])
        return bool(operation and operation.get("security"))

    return needs_key
