"""The 1:N gallery: subjects and their face embeddings, in SQLite (default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from stra_face.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace
from stra_face.gallery.sqlite import SQLiteGallery


def open_gallery(path: str | Path, dsn: str | None = None, **postgres_options) -> Gallery:
    """PostgreSQL when a DSN is given (needs the `postgres` extra; options go to PostgresGallery),
    else SQLite at `path`."""
    if dsn:
        from stra_face.gallery.postgres import PostgresGallery

        return PostgresGallery(dsn, **postgres_options)
    return SQLiteGallery(path)


__all__ = ["Gallery", "GalleryError", "Match", "Subject", "SubjectFace", "SQLiteGallery", "open_gallery"]
