"""The FastAPI application: `create_app(settings)`; `stra_face.service.app:app` for uvicorn."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from stra_face import __version__
from stra_face.service.api import faces, subjects, system, verify, video
from stra_face.service.api.deps import admitted, require_api_key
from stra_face.service.errors import install_error_handlers
from stra_face.service.limits import body_limit
from stra_face.service.metrics import Metrics, MetricsMiddleware
from stra_face.service.middleware import (
    ApiKeyMiddleware,
    HeadAsGetMiddleware,
    RelativeRedirectMiddleware,
    RequestGuardMiddleware,
    UnhandledErrorMiddleware,
)
from stra_face.service.openapi import install_openapi, needs_api_key
from stra_face.service.settings import Settings
from stra_face.service.state import ServiceState

log = logging.getLogger("stra_face")
STATIC = Path(__file__).resolve().parent / "static"
# The browser pages fetch nothing from another origin, whatever their bundles reference (ReDoc's footer
# logo is on a CDN; the image simply does not show): they work offline and leak nothing.
SAME_ORIGIN_ONLY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; "
    "font-src 'self' data:",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServiceState.load(settings, metrics)
        await state.start()
        app.state.service = state
        log.info(
            "ready: embedding on %s, expression on %s",
            state.embedder.providers[0],
            state.expression.providers[0] if state.expression else "(no model)",
        )
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="StRA-Face",
        version=__version__,
        description=(
            "Face detection, verification, identification and expression recognition with "
            "Structure-Regularized Attention networks."
        ),
        lifespan=lifespan,
        docs_url=None,  # served below from vendored assets: /docs and /redoc work offline
        redoc_url=None,
    )
    app.state.metrics = metrics
    # Outermost last: unexpected errors -> JSON 500 (counted) around metrics around HEAD-as-GET
    # around the API key check around the body guard (which reads nothing until the route asks).
    app.add_middleware(
        RequestGuardMiddleware, limit_for=body_limit(app, settings), body_timeout_s=settings.body_timeout_s
    )
    app.add_middleware(RelativeRedirectMiddleware)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys, needs_key=needs_api_key(app))
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(UnhandledErrorMiddleware, count=metrics.count_unhandled)
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(system.router)
    authenticated = [Depends(require_api_key)]
    # Image routes are admitted (or refused with 503) before their body is read; enroll and
    # identify declare it themselves in the gallery router.
    for router in (faces.router, verify.router, video.router):
        app.include_router(router, dependencies=[*authenticated, Depends(admitted)])
    for router in (subjects.router, system.info_router):
        app.include_router(router, dependencies=authenticated)
    app.include_router(video.stream_router)  # checks the API key and admits the stream itself
    serve_docs_offline(app)
    serve_console(app)
    return app


def serve_docs_offline(app: FastAPI) -> None:
    """Swagger UI 5 and ReDoc 2 (both render OpenAPI 3.1) from static/vendor: no CDN."""
    app.mount("/docs/assets", StaticFiles(directory=STATIC / "vendor" / "swagger-ui"), name="swagger-ui")
    app.mount("/redoc/assets", StaticFiles(directory=STATIC / "vendor" / "redoc"), name="redoc")
    favicon = "/docs/assets/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url=favicon,
            swagger_ui_parameters={"validatorUrl": None},  # else the page asks validator.swagger.io for a badge
        )
        page.headers.update(SAME_ORIGIN_ONLY)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            redoc_js_url="/redoc/assets/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
        page.headers.update(SAME_ORIGIN_ONLY)
        return page


def serve_console(app: FastAPI) -> None:
    """The web console: static files that call the public API from the same origin."""
    console = STATIC / "ui"

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/", include_in_schema=False)
    async def ui() -> FileResponse:
        return FileResponse(console / "index.html", headers=SAME_ORIGIN_ONLY)

    app.mount("/ui", StaticFiles(directory=console), name="ui")


def app_factory() -> FastAPI:
    """For `uvicorn --factory stra_face.service.app:app_factory` (settings from the environment)."""
    return create_app()
