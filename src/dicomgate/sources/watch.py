"""Watched import folders: each subfolder or loose file dropped in is one import once stable.

A drop is stable when nothing in it (names, sizes, mtimes, types) changed for ``stable_for``
seconds. It is then *claimed*: moved (one atomic rename) into ``processing/<claim>/`` with a
``claim.json`` beside it, so that later drops under the same name never mix with it, and an
import job is submitted for it. The claim file records the job id once it is known; after a
restart, a claim without a job id is submitted again and a claim with one is left to the job
engine, which resumes the job. The job itself moves or removes each file once its outcome is
committed (see :mod:`dicomgate.sources.folder_job`); nothing here deletes data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from dicomgate.archive.models import Project
from dicomgate.errors import ConfigError
from dicomgate.sources.config import SourcesConfig, WatchFolder

if TYPE_CHECKING:
    from dicomgate.db import Database
    from dicomgate.jobs import Jobs

log = logging.getLogger(__name__)

CLAIM_FILE = "claim.json"
Submit = Callable[[dict[str, Any]], str]
Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(path: Path) -> Fingerprint:
    """Return what must stay unchanged for a drop to count as stable (links not followed)."""
    try:
        info = path.lstat()
    except OSError:
        return ()
    rows = [("", info.st_mode, info.st_size, info.st_mtime_ns)]
    stack = [(path, "")] if stat.S_ISDIR(info.st_mode) else []
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = f"{prefix}{entry.name}"
            rows.append((key, st.st_mode, st.st_size, st.st_mtime_ns))
            if stat.S_ISDIR(st.st_mode):
                stack.append((Path(entry.path), f"{key}/"))
    return tuple(sorted(rows))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` durably: temp file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_claim(claim: Path) -> None:
    """Remove a claim that holds no drop (tolerating another node doing the same)."""
    (claim / CLAIM_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        claim.rmdir()


@dataclass
class _Seen:
    fingerprint: Fingerprint
    since: float


def job_params(folder: WatchFolder, claim: Path, name: str, workers: int = 1) -> dict[str, Any]:
    """Return the parameters of the import job of one claimed drop."""
    return {
        "root": str(claim / name),
        "claim": str(claim),
        "name": name,
        "project": folder.project,
        "after_import": folder.after_import.value,
        "non_dicom": folder.non_dicom.value,
        "done": str(folder.done),
        "rejected": str(folder.rejected),
        "workers": workers,
    }


class FolderWatcher:
    """Polls import folders, claims stable drops and submits one import job per drop.

    Parameters
    ----------
    folders
        The configured import folders.
    stable_for
        Seconds without any change before a drop is imported.
    submit
        Submits an import job with the given parameters and returns its id.
    clock
        Monotonic seconds (tests may pass their own).
    workers
        Threads each import job receives with.
    noticed
        Called when a folder is dropped, before it is stable (the service starts the import
        processes then, while the drop is still being written).
    """

    def __init__(
        self,
        folders: list[WatchFolder],
        stable_for: float,
        submit: Submit,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 1,
        noticed: Callable[[], None] | None = None,
    ) -> None:
        self.folders = folders
        self.noticed = noticed
        self.workers = workers
        self.stable_for = stable_for
        self.submit = submit
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}
        for folder in folders:
            for path in (folder.path, folder.processing):
                path.mkdir(parents=True, exist_ok=True)

    def poll(self) -> list[str]:
        """Make one pass over every folder; return the ids of the jobs submitted."""
        submitted: list[str] = []
        for folder in self.folders:
            submitted.extend(self._resume(folder))
            for path in self._drops(folder):
                job_id = self._claim(folder, path) if self._stable(path) else None
                if job_id is not None:
                    submitted.append(job_id)
        return submitted

    def _drops(self, folder: WatchFolder) -> list[Path]:
        reserved = {p.resolve() for p in (folder.done, folder.rejected, folder.processing)}
        try:
            names = sorted(os.listdir(folder.path))
        except OSError as exc:
            log.warning("import folder cannot be listed (%s)", type(exc).__name__)
            return []
        drops = [folder.path / n for n in names if not n.startswith(".")]
        present = [p for p in drops if p.is_symlink() or p.resolve() not in reserved]
        for gone in [p for p in self._seen if p.parent == folder.path and p not in present]:
            del self._seen[gone]
        return present

    def _stable(self, path: Path) -> bool:
        now, current = self.clock(), fingerprint(path)
        seen = self._seen.get(path)
        if seen is None and self.noticed is not None and path.is_dir() and not path.is_symlink():
            self.noticed()
        if seen is None or seen.fingerprint != current:
            self._seen[path] = _Seen(current, now)
            return False
        return now - seen.since >= self.stable_for

    def _claim(self, folder: WatchFolder, path: Path) -> str | None:
        claim = folder.processing / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
        claim.mkdir(parents=True)
        _write_json(claim / CLAIM_FILE, {"name": path.name, "job_id": None})
        try:
            path.rename(claim / path.name)
        except FileNotFoundError:  # another node claimed it first, or it was taken away
            _drop_claim(claim)
            return None
        _fsync_dir(claim)
        _fsync_dir(folder.path)
        self._seen.pop(path, None)
        return self._submit(folder, claim, path.name)

    def _submit(self, folder: WatchFolder, claim: Path, name: str) -> str:
        job_id = self.submit(job_params(folder, claim, name, self.workers))
        _write_json(claim / CLAIM_FILE, {"name": name, "job_id": job_id})
        log.info("watched folder: claim %s is import job %s", claim.name, job_id)
        return job_id

    def _resume(self, folder: WatchFolder) -> list[str]:
        """Submit the claims a crash left without a job; drop claims whose drop never moved."""
        submitted = []
        for claim in sorted(p for p in folder.processing.iterdir() if p.is_dir()):
            try:
                state = json.loads((claim / CLAIM_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # not a claim of ours: leave it alone
            if state.get("job_id"):
                continue
            name = str(state.get("name", ""))
            if name and os.path.lexists(claim / name):
                submitted.append(self._submit(folder, claim, name))
            else:  # the crash came before the rename: the drop is still in the folder
                _drop_claim(claim)
        return submitted


def check_projects(folders: list[WatchFolder], db: Database) -> None:
    """Fail at start when a watched folder names a project that does not exist.

    Raises
    ------
    ConfigError
        Naming the option of the first folder whose project is unknown.
    """
    with db.reader() as session:
        known = set(session.scalars(select(Project.id)))
    for index, folder in enumerate(folders):
        if folder.project not in known:
            raise ConfigError(
                f"sources.watch.{index}.project: no such project {folder.project!r}"
                " (declare it under projects)"
            )


def start_watcher(
    config: SourcesConfig, jobs: Jobs, stop: threading.Event
) -> threading.Thread | None:
    """Start the thread polling the configured import folders (None when there are none)."""
    if not config.watch:
        return None
    from dicomgate.sources import import_processes
    from dicomgate.sources.folder_job import KIND

    check_projects(config.watch, jobs.db)

    watcher = FolderWatcher(
        config.watch,
        config.stable_for,
        lambda p: jobs.submit(KIND, p),
        workers=config.import_workers,
        noticed=import_processes.prestart,
    )

    def loop() -> None:
        while True:
            try:
                watcher.poll()
            except Exception:
                log.exception("watched folder pass failed; trying again at the next interval")
            if stop.wait(config.poll_interval):
                return

    thread = threading.Thread(target=loop, name="folder-watcher", daemon=True)
    thread.start()
    return thread
