"""What every DICOMweb route needs: the stores, the options, and the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from dicomgate.access.dicomweb.config import DicomwebSettings
from dicomgate.access.dicomweb.resources import EVERYTHING, Scope
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.db import Database
from dicomgate.errors import NotFoundError

DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True, slots=True)
class Context:
    """The index (read sessions), the blob store and the ``dicomweb`` settings."""

    db: Database
    blobs: FilesystemBlobStore
    settings: DicomwebSettings

    def file(self, blob_key: str) -> Path:
        """Return the path of a stored blob, refusing one the store does not hold."""
        path = self.blobs.path(blob_key)
        if not path.is_file():
            raise NotFoundError("the stored file of an instance is missing")
        return path


def scope_of(request: Request) -> Scope:
    """Return what the caller may see (every project until the auth issue adds roles)."""
    return EVERYTHING
