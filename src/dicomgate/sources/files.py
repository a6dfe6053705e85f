"""The ``import_files`` job: files and folders on this machine, through intake.

The first run scans the given paths (folders recursively, links never followed) and declares
every entry as an expected item; each run then receives the pending entries in batches
(``sources.batches``), so a run resumed after a crash reads only what has no outcome yet.
Entries that are not regular files (symbolic links, FIFOs, devices) are recorded as skipped
with the reason; a file that vanished before it was read is missing. With ``cleanup``, a file
is deleted once intake has it durably, and emptied folders are removed (never ``keep``, the
project's inbox folder); the archive may then take the file itself instead of a copy of it
(``archive.blobstore.TakenFile``). A file an interrupted run recorded but did not delete is
deleted at the end of a later run if the archive holds exactly it (``sources.leftovers``).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dicomgate.deid.identity import confirmed_identity
from dicomgate.errors import PermanentError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Prepared
from dicomgate.jobs import ItemOutcome, JobContext, register
from dicomgate.sources.batch_settle import prepare_read
from dicomgate.sources.batches import Planned, Recorded, run_batches
from dicomgate.sources.leftovers import remove_left_imported
from dicomgate.sources.scan import unchanged_since

KIND = "import_files"
NOT_FOUND = "not a file or folder"
READERS = 4  # threads of one job reading and parsing files ahead of the batch being stored


class ImportParams(BaseModel):
    """Parameters of an ``import_files`` job."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(min_length=1)
    origin: OriginKind = OriginKind.IMPORT
    project: str | None = None
    subject: str | None = None
    session: str | None = None
    cleanup: bool = False
    keep: str | None = None
    identity: dict[str, str] | None = None  # operator-confirmed identity (issue 5)

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else confirmed_identity(value).to_dict()


class NotRegularFileError(Exception):
    """The entry is a link, FIFO, device or folder: it is not read."""


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link, not followed"
    if stat.S_ISDIR(mode):
        return "folder"
    return "not a regular file (FIFO, socket or device)"


def read_regular_file(path: str) -> tuple[bytes, os.stat_result | None]:
    """Return a regular file's bytes and its ``fstat`` (None if it changed while read).

    Links, FIFOs and devices are refused without being opened.

    Raises
    ------
    NotRegularFileError
        When ``path`` is not a regular file (checked again on the opened descriptor).
    OSError
        When it cannot be read (``FileNotFoundError`` when it is gone).
    """
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(_kind_of(mode))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError("replaced by something that is not a regular file")
        return handle.read(), unchanged_since(fd, info)


def scan(paths: list[str]) -> Iterator[str]:
    """Yield every entry below ``paths`` (files and anything else; links are not entered)."""
    for raw in paths:
        path = os.path.abspath(raw)
        if os.path.isdir(path) and not os.path.islink(path):
            for folder, dirs, files in os.walk(path, followlinks=False):
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(folder, name)
                # os.walk lists links to folders among dirs but never enters them: report them.
                for name in dirs:
                    if os.path.islink(os.path.join(folder, name)):
                        yield os.path.join(folder, name)
        else:
            yield path


@register(KIND)
def import_files(ctx: JobContext) -> None:
    """Import every file below the job's paths; one item per entry."""
    try:
        params = ImportParams.model_validate(ctx.params)
    except ValidationError as exc:
        raise PermanentError(
            f"invalid import_files parameters: {exc.error_count()} errors"
        ) from None
    if not ctx.planned:
        keys = list(dict.fromkeys(scan(params.paths)))
        ctx.expect(keys)
        ctx.log(f"scanned {len(keys)} entries")
        for key in keys:
            if not os.path.lexists(key):
                ctx.record(key, ItemOutcome.SKIPPED, NOT_FOUND)
    _import_pending(ctx, params)
    if ctx.cancelled():
        return
    if params.cleanup:
        remove_left_imported(ctx)
        _remove_empty_folders(params)


def _import_pending(ctx: JobContext, params: ImportParams) -> None:
    """Import the pending entries in batches, READERS threads reading and parsing ahead.

    The first error (e.g. the storage is full) stops the batches not yet started and is
    raised for the engine's retry policy, after the rest of its batch was recorded.
    """
    items = [Planned(key, Path(key), take=params.cleanup) for key in ctx.pending()]
    origin = partial(_origin, ctx, params)
    after = _remove_imported if params.cleanup else None
    for _recorded in run_batches(ctx, items, load_entry, origin, after, READERS):
        pass


def _origin(ctx: JobContext, params: ImportParams, item: Planned) -> Origin:
    return ctx.origin(
        params.origin,
        import_path=item.key,
        project=params.project,
        subject_label=params.subject,
        session_label=params.session,
        confirmed_identity=params.identity,
    )


def load_entry(item: Planned, origin: Origin) -> Prepared | Recorded:
    """Read and prepare one entry (on a reader thread or an import process), or say why not."""
    try:
        data, info = read_regular_file(item.key)
    except NotRegularFileError as exc:
        return ItemOutcome.SKIPPED, str(exc)
    except FileNotFoundError:
        return ItemOutcome.MISSING, "the file disappeared before it was read"
    except OSError as exc:
        return ItemOutcome.FAILED, f"cannot read: {exc.strerror}"
    return prepare_read(item, origin, data, info)


def _remove_imported(item: Planned, recorded: Recorded) -> None:
    """Delete a file once intake has it durably and its outcome is committed (``cleanup``)."""
    if recorded[0].ok:
        Path(item.key).unlink(missing_ok=True)


def _remove_empty_folders(params: ImportParams) -> None:
    keep = os.path.abspath(params.keep) if params.keep else None
    for raw in params.paths:
        top = os.path.abspath(raw)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for folder, _dirs, _files in os.walk(top, topdown=False, followlinks=False):
            if folder != keep:
                with contextlib.suppress(OSError):  # not empty: something was not imported
                    os.rmdir(folder)
