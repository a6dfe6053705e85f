"""Job handlers of the media (DICOMDIR or folder) import and of the HTTP upload.

Both first declare everything they expect, then receive only what is still pending, so the
engine may run them again after a crash. An upload's spooled body is removed once every item
has a final outcome; it is kept while anything failed, for a retry.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dicomgate.errors import PermanentError
from dicomgate.intake.origin import OriginKind
from dicomgate.jobs import ItemOutcome, JobContext, register, store
from dicomgate.sources.archives import ArchiveLimits
from dicomgate.sources.dicomdir import MediaError
from dicomgate.sources.imports import Planned, plan_path, planned_found, run_archive, run_files
from dicomgate.sources.scan import classify

MEDIA = "media_import"
UPLOAD = "upload_import"
MANIFEST = "manifest.json"
BODY = "body"


def media_params(
    path: Path,
    project: str | None,
    study: str | None = None,
    series: str | None = None,
    workers: int = 4,
) -> dict[str, Any]:
    """Return the parameters of a media import job."""
    return {
        "path": str(path),
        "project": project,
        "study": study,
        "series": series,
        "workers": workers,
    }


@register(MEDIA)
def handle_media(ctx: JobContext) -> None:
    """Import a folder through its DICOMDIR (optionally one study/series), else scan it."""
    params = ctx.params
    root = Path(params["path"])
    try:
        plan = plan_path(root, params.get("study"), params.get("series"))
    except MediaError as exc:
        raise PermanentError(str(exc)) from exc
    ctx.set_message(f"importing {len(plan)} files")
    project = params.get("project")
    run_files(
        ctx,
        plan,
        lambda item: ctx.origin(OriginKind.DICOMDIR, project=project, import_path=item.key),
        workers=int(params.get("workers", 1)),
    )


def _spooled_plan(spool: Path) -> list[Planned]:
    manifest = json.loads((spool / MANIFEST).read_text(encoding="utf-8"))
    plan = []
    for entry in manifest["files"]:
        found = classify(spool / entry["file"], entry["key"])
        plan.append(planned_found(found))
    return plan


@register(UPLOAD)
def handle_upload(ctx: JobContext) -> None:
    """Import an uploaded archive or set of files from its spool folder, then remove it."""
    params = ctx.params
    spool = Path(params["spool"])
    project = params["project"]
    if not spool.is_dir():  # removed after an earlier run: nothing left to read again
        for key in ctx.pending():
            ctx.record(key, ItemOutcome.MISSING, "the uploaded data is no longer on disk")
        return
    if params["archive"]:
        run_archive(
            ctx,
            spool / BODY,
            ArchiveLimits.model_validate(params["limits"]),
            lambda key: ctx.origin(OriginKind.UPLOAD, project=project, import_path=key),
        )
    else:
        run_files(
            ctx,
            _spooled_plan(spool),
            lambda item: ctx.origin(OriginKind.UPLOAD, project=project, import_path=item.key),
            workers=int(params.get("workers", 1)),
        )
    _remove_spool(ctx, spool)


def _remove_spool(ctx: JobContext, spool: Path) -> None:
    """Remove the spooled upload once every item is in the archive; keep it for a retry."""
    if ctx.cancelled():
        return
    with ctx.intake.db.reader() as session:
        counts = store.outcome_counts(session, ctx.job_id)
    if any(outcome == "pending" or ItemOutcome(outcome).error for outcome in counts):
        ctx.log("the uploaded data is kept until every item is in the archive (jobs retry)")
        return
    shutil.rmtree(spool, ignore_errors=True)
