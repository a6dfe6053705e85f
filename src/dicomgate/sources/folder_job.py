"""The import job of one claimed drop of a watched folder, and what becomes of its files.

Each file is moved or removed only after its outcome is committed: imported files go to
``done/<claim>/`` (or are removed), refused ones to ``rejected/<claim>/`` with a
``.reason.txt`` beside them (or are deleted); files that failed stay in ``processing/`` for a
retry. A run interrupted anywhere is safe to run again: the plan is rebuilt from the files
still there, only pending items are received, files whose outcome was recorded before the
crash are moved according to that outcome, and an item made pending again by a retry whose
file is already in ``rejected/`` is settled from its reason file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from sqlalchemy import select

from dicomgate.intake.origin import OriginKind
from dicomgate.jobs import ItemOutcome, JobContext, register
from dicomgate.jobs.models import JobItem
from dicomgate.sources.config import AfterImport, NonDicom
from dicomgate.sources.dicomdir import MediaError
from dicomgate.sources.imports import Planned, Recorded, planned_found, run_files
from dicomgate.sources.imports import plan_path as _plan_path
from dicomgate.sources.scan import classify, walk
from dicomgate.sources.watch import CLAIM_FILE

KIND = "watched_folder"
_KEEP = frozenset({ItemOutcome.MISSING, ItemOutcome.FAILED})
_REFUSED_BY_INTAKE = "refused by intake (a copy is kept in the archive's set-aside area)"


class _Mover:
    """Moves or removes the files of one claim once their outcome is known."""

    def __init__(self, ctx: JobContext) -> None:
        params = ctx.params
        self.ctx = ctx
        self.root = Path(params["root"])
        self.claim = Path(params["claim"])
        self.after_import = AfterImport(params["after_import"])
        self.non_dicom = NonDicom(params["non_dicom"])
        self.done = Path(params["done"]) / self.claim.name
        self.rejected = Path(params["rejected"]) / self.claim.name

    def path_of(self, key: str) -> Path:
        return self.root if self.root.name == key and not self.root.is_dir() else self.root / key

    def relative(self, path: Path) -> Path:
        return (
            Path(self.root.name) / path.relative_to(self.root)
            if path != self.root
            else Path(self.root.name)
        )

    def after(self, item: Planned, recorded: Recorded) -> None:
        """Move or remove the file of ``item`` now that its outcome is committed."""
        outcome, reason = recorded
        path = item.path or self.path_of(item.key)
        if outcome in _KEEP or not os.path.lexists(path):
            return
        if outcome.ok:
            self.imported(path)
        else:
            self.refused(path, reason or _REFUSED_BY_INTAKE)

    def imported(self, path: Path) -> None:
        if self.after_import is AfterImport.MOVE:
            _move(path, self.done / self.relative(path))
        else:
            path.unlink()

    def refused(self, path: Path, reason: str) -> None:
        if self.non_dicom is NonDicom.DELETE:
            path.unlink()
            return
        target = self.rejected / self.relative(path)
        _move(path, target)
        note = target.with_name(f"{target.name}.reason.txt")
        note.write_text(f"{reason}\njob {self.ctx.job_id}\n", encoding="utf-8")


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        target = target.with_name(f"{target.name}.{os.getpid()}-{id(source):x}")
    shutil.move(source, target)


def _prune(root: Path) -> None:
    """Remove the empty folders under ``root`` (and ``root`` itself when empty)."""
    if not root.is_dir() or root.is_symlink():
        return
    for folder, _dirs, _files in os.walk(root, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            continue  # not empty


def _plan(ctx: JobContext, root: Path) -> list[Planned]:
    try:
        return _plan_path(root)
    except MediaError as exc:
        ctx.log(f"the DICOMDIR cannot be used ({exc}); the folder is scanned instead")
        return [planned_found(found) for found in walk(root)]


def recorded(ctx: JobContext) -> dict[str, tuple[str | None, str]]:
    """Return every item of the job: key -> (outcome or None while pending, reason)."""
    query = select(JobItem.key, JobItem.outcome, JobItem.reason).where(JobItem.job_id == ctx.job_id)
    with ctx.intake.db.reader() as session:
        return {key: (outcome, reason) for key, outcome, reason in session.execute(query)}


def _sweep(ctx: JobContext, mover: _Mover, planned: set[str]) -> None:
    """Deal with files left behind: outcome recorded but not moved, or not planned at all."""
    root = mover.root
    items = recorded(ctx)
    for key in [k for k, (outcome, _) in items.items() if outcome is None and k not in planned]:
        _settle_vanished(ctx, mover, key)
    if not os.path.lexists(root):
        return
    found = walk(root) if root.is_dir() and not root.is_symlink() else [classify(root, root.name)]
    for entry in found:
        outcome, reason = items.get(entry.key, (None, ""))
        if entry.key not in items:  # the DICOMDIR and other files the plan did not list
            mover.imported(entry.path)
        elif outcome is not None:  # recorded before a crash, never moved
            mover.after(Planned(entry.key, entry.path), (ItemOutcome(outcome), reason))


def _settle_vanished(ctx: JobContext, mover: _Mover, key: str) -> None:
    """Record a pending item whose file is gone (moved to rejected/ by an earlier run)."""
    note = mover.rejected / mover.relative(mover.path_of(key))
    note = note.with_name(f"{note.name}.reason.txt")
    if note.is_file():
        reason = note.read_text(encoding="utf-8").splitlines()[0]
        ctx.record(key, ItemOutcome.REJECTED, reason, {"in": "rejected folder"})
    else:
        ctx.record(key, ItemOutcome.MISSING, "no longer in the processing folder")


@register(KIND)
def handle(ctx: JobContext) -> None:
    """Import one claimed drop, moving or removing each file once its outcome is committed."""
    mover = _Mover(ctx)
    project = ctx.params["project"]
    planned: set[str] = set()
    if os.path.lexists(mover.root):
        plan = _plan(ctx, mover.root)
        if mover.after_import is AfterImport.REMOVE:  # the archive may take the files
            plan = [replace(item, take=True) for item in plan]
        ctx.set_message(f"importing {len(plan)} files")
        run_files(
            ctx,
            plan,
            lambda item: ctx.origin(OriginKind.FOLDER, project=project, import_path=item.key),
            mover.after,
            workers=int(ctx.params.get("workers", 1)),
        )
        if ctx.cancelled():
            return
        planned = {item.key for item in plan}
    _sweep(ctx, mover, planned)  # also settles retried items whose file was moved away
    _prune(mover.root)
    if not os.path.lexists(mover.root):
        (mover.claim / CLAIM_FILE).unlink(missing_ok=True)
        _prune(mover.claim)
