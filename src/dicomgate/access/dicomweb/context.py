"""What every DICOMweb route needs: the stores, the options, and the caller's scope."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from dicomgate.access.dicomweb.config import DicomwebSettings
from dicomgate.access.dicomweb.resources import Scope
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.roles import Caller
from dicomgate.db import Database
from dicomgate.errors import NotFoundError

DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True, slots=True)
class Context:
    """The index (read sessions), the blob store, the ``dicomweb`` settings, the audit trail."""

    db: Database
    blobs: FilesystemBlobStore
    settings: DicomwebSettings
    audit: AuditTrail | None = None

    def file(self, blob_key: str) -> Path:
        """Return the path of a stored blob, refusing one the store does not hold."""
        path = self.blobs.path(blob_key)
        if not path.is_file():
            raise NotFoundError("the stored file of an instance is missing")
        return path


def scope_of(request: Request) -> Scope:
    """Return what the caller may see: the projects of the caller the auth dependency resolved.

    The router is mounted behind that dependency (``app.py``), which leaves the caller on the
    request; a request without one (a router mounted without it) sees nothing.
    """
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        return Scope(projects=frozenset())
    return Scope(projects=caller.visible_projects())
