"""Options of the import sources (watched folders, uploads, archives): one nested model."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from dicomgate.sources.archives import ArchiveLimits

_PROJECT_ID = r"^[A-Za-z0-9_-]+$"


class AfterImport(enum.StrEnum):
    """What becomes of a dropped file once its import has committed."""

    REMOVE = "remove"
    MOVE = "move"


class NonDicom(enum.StrEnum):
    """What becomes of a dropped file that is not DICOM (or not a regular file)."""

    MOVE = "move"
    DELETE = "delete"


class WatchFolder(BaseModel):
    """One import folder: each subfolder or loose file dropped into it is one import.

    Parameters
    ----------
    path
        The folder to watch (created if missing).
    project
        The project its imports deliver to.
    after_import
        ``remove`` the imported files, or ``move`` them to ``done_dir``.
    non_dicom
        ``move`` files that are not DICOM to ``rejected_dir`` with a reason file, or ``delete``.
    done_dir, rejected_dir, processing_dir
        Default to ``done/``, ``rejected/`` and ``processing/`` inside ``path``; those names
        are never taken for drops.
    """

    model_config = ConfigDict(extra="forbid")

    path: Path
    project: str = Field(pattern=_PROJECT_ID, max_length=64)
    after_import: AfterImport = AfterImport.REMOVE
    non_dicom: NonDicom = NonDicom.MOVE
    done_dir: Path | None = None
    rejected_dir: Path | None = None
    processing_dir: Path | None = None

    @property
    def done(self) -> Path:
        """Return the folder imported files are moved to (``after_import: move``)."""
        return self.done_dir or self.path / "done"

    @property
    def rejected(self) -> Path:
        """Return the folder refused files are moved to, each with a reason file."""
        return self.rejected_dir or self.path / "rejected"

    @property
    def processing(self) -> Path:
        """Return the folder a stable drop is moved into while it is imported."""
        return self.processing_dir or self.path / "processing"


class SourcesConfig(BaseModel):
    """Options of the watched folders, the HTTP upload and the archive reader.

    ``import_workers`` threads read ahead of a small import; an import of at least
    ``import_processes_from`` pending files is read, parsed and stored by
    ``import_processes`` processes (0: one per core; 1: none, the job's own thread).
    """

    model_config = ConfigDict(extra="forbid")

    watch: list[WatchFolder] = Field(default_factory=list)
    stable_for: float = Field(default=10.0, ge=0)
    poll_interval: float = Field(default=2.0, gt=0)
    upload_dir: Path | None = None
    max_upload_bytes: int = Field(default=64 << 30, ge=1)
    archive: ArchiveLimits = Field(default_factory=ArchiveLimits)
    media_roots: list[Path] = Field(default_factory=list)
    import_workers: int = Field(default=4, ge=1, le=32)
    import_processes: int = Field(default=0, ge=0, le=64)
    import_processes_from: int = Field(default=1000, ge=1)
