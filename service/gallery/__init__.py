"""The 1:N gallery: subjects and their face embeddings, persisted (SQLite, or PostgreSQL + pgvector)."""
from __future__ import annotations

from service.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace
from service.gallery.sqlite import SQLiteGallery


def open_gallery(path, dsn: str | None, dimension: int) -> Gallery:
    if dsn:
        from service.gallery.postgres import PostgresGallery

        return PostgresGallery(dsn, dimension)
    return SQLiteGallery(path)


__all__ = ["Gallery", "GalleryError", "Match", "Subject", "SubjectFace", "SQLiteGallery", "open_gallery"]
