"""Files an import recorded as imported but did not delete (its ``cleanup`` was interrupted).

An ``import_files`` job with ``cleanup`` deletes each file right after its outcome is
committed. A crash between the two leaves the file where it was, and a resumed run never
sees it again (its item is no longer pending). This sweep, at the end of every such run,
deletes such a file only when the archive holds exactly it: the file is the stored blob
itself (taken by hard link, same inode) or has the stored instance's SHA-256. Anything else
at that path (a new file a user put there since) stays.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select

from dicomgate.archive.index import stored_instances
from dicomgate.dicom.part10 import is_part10
from dicomgate.intake.receive import Intake
from dicomgate.jobs import ItemOutcome, JobContext
from dicomgate.jobs.models import JobItem
from dicomgate.sources.scan import read_regular

_IMPORTED = (ItemOutcome.STORED.value, ItemOutcome.ALREADY_STORED.value)


def remove_left_imported(ctx: JobContext) -> int:
    """Delete the files of this job's imported items that are still there; return how many."""
    left = {key: uid for key, uid in _imported_items(ctx) if os.path.lexists(key)}
    if not left:
        return 0
    with ctx.intake.db.read_connection() as connection:
        stored = stored_instances(connection, left.values())
    removed = 0
    for key, uid in left.items():
        if uid in stored and _is_archived(ctx.intake, key, *stored[uid][1:]):
            os.unlink(key)
            removed += 1
    if removed:
        ctx.log(f"removed {removed} imported files an interrupted run had left")
    return removed


def _imported_items(ctx: JobContext) -> Iterable[tuple[str, str]]:
    query = select(JobItem.key, JobItem.detail).where(
        JobItem.job_id == ctx.job_id, JobItem.outcome.in_(_IMPORTED)
    )
    with ctx.intake.db.reader() as session:
        rows = session.execute(query).all()
    return [(str(key), str(detail["sop_instance_uid"])) for key, detail in rows if detail]


def _is_archived(intake: Intake, path: str, digest: str, blob_key: str) -> bool:
    """Return True when the regular file at ``path`` is the blob or holds what it holds."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return False
        blob = os.stat(intake.blobs.path(blob_key))
        if (info.st_dev, info.st_ino) == (blob.st_dev, blob.st_ino):
            return True
        data = read_regular(Path(path))
    except OSError:
        return False
    # Intake's digest leaves the preamble out; a file without one became a new blob.
    return is_part10(data) and hashlib.sha256(memoryview(data)[128:]).hexdigest() == digest
