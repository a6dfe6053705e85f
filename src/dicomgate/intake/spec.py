"""``IntakeSpec``: what another process needs to open the same intake stores (picklable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.db import Database
from dicomgate.duplicate_policy import DuplicatePolicy
from dicomgate.intake.receive import Intake


@dataclass(frozen=True, slots=True)
class IntakeSpec:
    """The index URL, blob folders and duplicate policy of one intake.

    Parameters
    ----------
    database_url
        The index (and job tables) URL.
    blobs, set_aside
        The blob store folders.
    duplicate_policy
        What intake does with a second, different copy of an instance.
    """

    database_url: str
    blobs: Path
    set_aside: Path
    duplicate_policy: DuplicatePolicy

    @classmethod
    def of(cls, intake: Intake) -> IntakeSpec:
        """Return the spec of ``intake``."""
        db, blobs, aside = intake.db, intake.blobs.root, intake.set_aside.root
        return cls(db.url, blobs, aside, intake.duplicate_policy)

    @property
    def shareable(self) -> bool:
        """Return True when another process can open the same index (not an in-memory one)."""
        url = self.database_url
        return not (url.startswith("sqlite") and (url.endswith(":memory:") or url == "sqlite://"))

    def open(self) -> Intake:
        """Open the stores: a new engine, blob stores and group commit of this process."""
        blobs, aside = FilesystemBlobStore(self.blobs), FilesystemBlobStore(self.set_aside)
        return Intake(Database(self.database_url), blobs, aside, self.duplicate_policy)
