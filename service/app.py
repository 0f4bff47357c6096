"""The FastAPI application: `create_app(settings)`; `service.app:app` for uvicorn."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from stra_face import __version__
from service.api import faces, subjects, system, verify
from service.api.deps import require_api_key
from service.errors import install_error_handlers
from service.metrics import Metrics, MetricsMiddleware
from service.settings import Settings
from service.state import ServiceState

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
    )
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)
    app.include_router(system.router)
    authenticated = [Depends(require_api_key)]
    for router in (faces.router, verify.router, subjects.router, system.info_router):
        app.include_router(router, dependencies=authenticated)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory service.app:app_factory` (settings from the environment)."""
    return create_app()
