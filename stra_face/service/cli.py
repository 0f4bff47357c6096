"""`stra-face serve`: uvicorn with the settings from the environment (STRA_*), flags override."""

from __future__ import annotations

import argparse
import logging
import os


def main(argv: list[str] | None = None) -> None:
    from stra_face.service.settings import Settings

    settings = Settings()
    parser = argparse.ArgumentParser(prog="stra-face serve", description="start the StRA-Face API")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument(
        "--workers", type=int, default=settings.workers, help="uvicorn worker processes (each loads the models)"
    )
    parser.add_argument("--log-level", default=os.environ.get("STRA_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)
    import uvicorn  # after the arguments: `--help` answers without loading the server

    from stra_face.service.server import TimedH11Protocol, limit_malloc_arenas

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Bounded malloc arenas: the environment variable for worker processes (read when they start),
    # mallopt for this one (it read the environment before we could set it).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    limit_malloc_arenas(int(os.environ["MALLOC_ARENA_MAX"]))
    if not settings.embedding_model.exists():
        raise SystemExit(f"embedding model not found: {settings.embedding_model} (set STRA_EMBEDDING_MODEL)")
    uvicorn.run(
        "stra_face.service.app:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        # Slow or stalled clients: headers within STRA_HEADER_TIMEOUT_S (TimedH11Protocol), bodies within
        # STRA_BODY_TIMEOUT_S (RequestGuardMiddleware, 408), idle keep-alive connections closed after
        # STRA_KEEP_ALIVE_TIMEOUT_S; TimedH11Protocol also refuses request heads over 16 KiB (431), targets over
        # 8 KiB (414), HTTP versions other than 1.x (505), and Content-Length with Transfer-Encoding (400).
        http=TimedH11Protocol,
        timeout_keep_alive=settings.keep_alive_timeout_s,
    )


if __name__ == "__main__":
    main()
