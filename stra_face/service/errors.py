"""One error shape for every failure: {"error": {"code": ..., "message": ...}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stra_face.gallery import GalleryError
from stra_face.service.openapi import operations_for
from stra_face.vision.decode import ImageError
from stra_face.vision.inference import Overloaded


class APIError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        parts.append(f"{location}: {item.get('msg')}" if location else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return error_response(error.status, error.code, error.message, error.headers)

    @app.exception_handler(ImageError)
    async def image_error(request: Request, error: ImageError):
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(GalleryError)
    async def gallery_error(request: Request, error: GalleryError):
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded):
        return error_response(503, "overloaded", str(error), {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return error_response(422, "validation_error", _validation_message(error))

    @app.exception_handler(RecursionError)
    async def too_deep(request: Request, error: RecursionError):
        # Input nested deeper than a parser or validator can follow, past the JSON guard: the client's doing.
        return error_response(400, "invalid_json", "the request is nested too deeply to process")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        headers = getattr(error, "headers", None)
        operations = operations_for(request.app, request.url.path) if error.status_code == 405 else None
        if operations:  # Starlette's Allow names one route's methods; a path may have several routes
            methods = set(operations) | ({"HEAD"} if "GET" in operations else set())
            headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
        code = getattr(error, "code", None) or _STATUS_CODES.get(
            error.status_code, "http_error"
        )  # the body guard's refusals carry their code
        return error_response(error.status_code, code, str(error.detail), headers)

    # Any other exception: `stra_face.service.middleware.UnhandledErrorMiddleware` answers a JSON 500.
