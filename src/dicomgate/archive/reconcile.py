"""Start-up reconciliation of blobs against the index after a crash.

Temporary files are removed (never acknowledged), blobs without an index row are moved to the
set-aside area with a record (a crash between fsync and commit), and index rows whose blob is
missing are reported.

Files younger than ``settle_seconds`` are left alone: another process writing to the same data
folder (a ``dicomgate import`` run beside the service) may have written a blob and be about to
commit the row naming it; setting it aside would leave that row without its blob. The next
start-up looks at them again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.models import Instance, SetAside
from dicomgate.db import Database

log = logging.getLogger(__name__)
SETTLE_SECONDS = 600.0


@dataclass
class ReconcileReport:
    """What the reconciler found and did."""

    temp_removed: int = 0
    orphans_set_aside: list[str] = field(default_factory=list)
    missing_blobs: list[int] = field(default_factory=list)
    recent_left: int = 0  # temporary files and unindexed blobs too young to judge


def reconcile(
    db: Database,
    blobs: FilesystemBlobStore,
    aside: FilesystemBlobStore,
    settle_seconds: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> ReconcileReport:
    """Bring blobs and index back in line; return what was found.

    Parameters
    ----------
    db, blobs, aside
        The index, the blob store and the set-aside area.
    settle_seconds
        Files changed more recently than this are left for the next start-up.
    clock
        The time now (tests look from a later start-up).
    """
    report = ReconcileReport()
    cutoff = clock() - settle_seconds
    _remove_old_temps(blobs, cutoff, report)
    # The index is read before the blobs are listed: a blob indexed in between looks
    # unindexed here, and is young, so it is left alone.
    with db.reader() as session:
        indexed = {
            str(k): int(pk) for pk, k in session.execute(select(Instance.pk, Instance.blob_key))
        }
    for key in blobs.iter_keys():
        if key in indexed:
            continue
        if _settled(blobs.path(key), cutoff):
            report.orphans_set_aside.append(_set_aside(db, blobs, aside, key))
        else:
            report.recent_left += 1
    if report.recent_left:
        log.info("%d recent unindexed files left for the next start-up", report.recent_left)
    present = set(blobs.iter_keys())
    report.missing_blobs = sorted(pk for key, pk in indexed.items() if key not in present)
    if report.missing_blobs:
        log.error(
            "%d indexed instances have no blob: %s",
            len(report.missing_blobs),
            report.missing_blobs[:20],
        )
    return report


def _remove_old_temps(blobs: FilesystemBlobStore, cutoff: float, report: ReconcileReport) -> None:
    for tmp in blobs.temp_files():
        if _settled(tmp, cutoff):
            tmp.unlink(missing_ok=True)
            report.temp_removed += 1
        else:
            report.recent_left += 1


def _settled(path: os.PathLike[str], cutoff: float) -> bool:
    """Return True when ``path`` last changed before ``cutoff`` (False when it is gone).

    The inode's change time counts too: a file an import handed over (a hard link, see
    ``blobstore.TakenFile``) keeps the modification time of its drop, however old.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    return max(info.st_mtime, info.st_ctime) < cutoff


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
