"""The FastAPI application: `create_app(settings)`; `stra_face.service.app:app` for uvicorn."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import swagger_ui_bundle
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from stra_face import __version__
from stra_face.service.api import faces, subjects, system, verify, video
from stra_face.service.api.deps import admitted, require_api_key
from stra_face.service.errors import install_error_handlers
from stra_face.service.limits import body_limit
from stra_face.service.metrics import Metrics, MetricsMiddleware
from stra_face.service.middleware import RequestGuardMiddleware, UnhandledErrorMiddleware
from stra_face.service.openapi import install_openapi
from stra_face.service.settings import Settings
from stra_face.service.state import ServiceState

log = logging.getLogger("stra_face")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServiceState.load(settings, metrics)
        await state.start()
        app.state.service = state
        log.info("ready: embedding on %s, expression on %s", state.embedder.providers[0], state.expression.providers[0] if state.expression else "(no model)")
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="StRA-Face",
        version=__version__,
        description="Face detection, verification, identification and expression recognition with Structure-Regularized Attention networks.",
        lifespan=lifespan,
        docs_url=None,  # served below from the swagger-ui-bundle package: /docs works offline
        redoc_url=None,
    )
    app.state.metrics = metrics
    # Outermost last: unexpected errors -> JSON 500 (counted) around metrics around the body guard.
    app.add_middleware(RequestGuardMiddleware, limit_for=body_limit(app, settings), body_timeout_s=settings.body_timeout_s)
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
    return app


def serve_docs_offline(app: FastAPI) -> None:
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js", swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def app_factory() -> FastAPI:
    """For `uvicorn --factory stra_face.service.app:app_factory` (settings from the environment)."""
    return create_app()
