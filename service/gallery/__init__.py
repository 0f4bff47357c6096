"""The 1:N gallery: subjects and their face embeddings, persisted in SQLite."""
from __future__ import annotations

from service.gallery.base import Gallery, GalleryError, Match, Subject, SubjectFace
from service.gallery.sqlite import SQLiteGallery


def open_gallery(path) -> Gallery:
    return SQLiteGallery(path)


__all__ = ["Gallery", "GalleryError", "Match", "Subject", "SubjectFace", "SQLiteGallery", "open_gallery"]
