"""Start-up reconciliation of blobs against the index after a crash.

Temporary files are removed (never acknowledged), blobs without an index row are moved to the
set-aside area with a record (a crash between fsync and commit), and index rows whose blob is
missing are reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.models import Instance, SetAside
from dicomgate.db import Database

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What the reconciler found and did."""

    temp_removed: int = 0
    orphans_set_aside: list[str] = field(default_factory=list)
    missing_blobs: list[int] = field(default_factory=list)


def reconcile(
    db: Database, blobs: FilesystemBlobStore, aside: FilesystemBlobStore
) -> ReconcileReport:
    """Bring blobs and index back in line; return what was found."""
    report = ReconcileReport()
    for tmp in blobs.temp_files():
        tmp.unlink(missing_ok=True)
        report.temp_removed += 1
    with db.reader() as session:
        indexed = {
            str(k): int(pk) for pk, k in session.execute(select(Instance.pk, Instance.blob_key))
        }
    for key in blobs.iter_keys():
        if key not in indexed:
            report.orphans_set_aside.append(_set_aside(db, blobs, aside, key))
    present = set(blobs.iter_keys())
    report.missing_blobs = sorted(pk for key, pk in indexed.items() if key not in present)
    if report.missing_blobs:
        log.error(
            "%d indexed instances have no blob: %s",
            len(report.missing_blobs),
            report.missing_blobs[:20],
        )
    return report


def _set_aside(
    db: Database, blobs: FilesystemBlobStore, aside: FilesystemBlobStore, key: str
) -> str:
    new_key = aside.create(blobs.read(key))
    with db.unit_of_work() as session:
        session.add(
            SetAside(
                reason="unindexed_blob",
                blob_key=new_key,
                message="blob found without an index row at start-up (crash before commit)",
            )
        )
    blobs.remove(key)
    return new_key
