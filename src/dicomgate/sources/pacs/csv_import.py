"""CSV mass import (the ShanoirUploader workflow) as the ``pacs_csv_import`` job.

Each row holds query keys (any DICOM keyword column: PatientID, AccessionNumber, StudyDate,
StudyInstanceUID, Modality...), optional identity columns checked against what the node
answers (PatientName, PatientBirthDate, PatientSex), and optional ``project``, ``subject`` and
``session`` columns. The job finds the row's studies, checks the identity, retrieves them and
records the row as an item ``row:NNNNN``: OK (stored) when every instance arrived, KO (missing,
failed) with the reason otherwise. :func:`report_csv` gives the per-row report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from pydicom.datadict import tag_for_keyword
from sqlalchemy import select

from dicomgate.archive.models import Project
from dicomgate.auth.roles import Caller
from dicomgate.db import Database
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import InvalidInputError, NotFoundError, PermanentError, WindowClosedError
from dicomgate.intake.origin import OriginKind
from dicomgate.jobs import ItemOutcome, JobContext, Jobs, register
from dicomgate.jobs.models import JobItem
from dicomgate.sources.pacs.batch import Target, retrieve_targets
from dicomgate.sources.pacs.jobs import JobLedger, bound, require_import_into
from dicomgate.sources.pacs.service import PacsService

KIND = "pacs_csv_import"
IDENTITY_COLUMNS = ("PatientName", "PatientBirthDate", "PatientSex")
LABEL_COLUMNS = ("project", "subject", "session")
MAX_ROWS = 100_000
_OK = {ItemOutcome.STORED.value, ItemOutcome.ALREADY_STORED.value}


def row_key(index: int) -> str:
    """Return the item key of row ``index`` (0-based, header excluded)."""
    return f"row:{index + 1:05d}"


def parse_csv(text: str) -> list[dict[str, str]]:
    """Return the rows of a mass-import CSV, checking its columns.

    Raises
    ------
    InvalidInputError
        When the header names an unknown column or no query column, or the file is too long.
    """
    try:
        reader = csv.DictReader(io.StringIO(text))
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader
        ]
    except csv.Error as exc:
        raise InvalidInputError(f"the CSV cannot be read: {exc}") from None
    for column in columns:
        if column not in LABEL_COLUMNS and tag_for_keyword(column) is None:
            raise InvalidInputError(f"unknown column {column!r}: DICOM keywords or {LABEL_COLUMNS}")
    if not any(c not in LABEL_COLUMNS + IDENTITY_COLUMNS for c in columns):
        raise InvalidInputError("the CSV has no query column (PatientID, StudyInstanceUID...)")
    if not rows:
        raise InvalidInputError("the CSV has no rows")
    if len(rows) > MAX_ROWS:
        raise InvalidInputError(f"the CSV has more than {MAX_ROWS} rows")
    return rows


def submit_import(
    jobs: Jobs, service: PacsService, node: str, text: str, project: str | None, caller: Caller
) -> str:
    """Check the CSV and submit a mass-import job from ``node``; return its id.

    The caller needs ``write`` in every project the rows name (and in ``project``, the one
    of rows that name none; without it only site admins).
    """
    rows = parse_csv(text)
    try:
        service.node(node)
    except NotFoundError as exc:
        raise InvalidInputError(str(exc)) from None
    projects = {row.get("project") or project for row in rows} - {""}
    for name in sorted(projects, key=str):
        require_import_into(caller, name)
    with service.intake.db.reader() as session:
        for name in sorted(p for p in projects if p):
            if session.get(Project, name) is None:
                raise InvalidInputError(f"no project {name!r}")
    params = {"node": node, "rows": rows, "project": project}
    return jobs.submit(KIND, params, caller.name)


def _norm(value: str) -> str:
    return " ".join(value.replace("^", " ").upper().split())


def identity_mismatch(row: dict[str, str], study: dict[str, str]) -> list[str]:
    """Return the identity attributes the row gives and the node answers differently."""
    return [
        column
        for column in IDENTITY_COLUMNS
        if row.get(column) and study.get(column) and _norm(row[column]) != _norm(study[column])
    ]


def _query_keys(row: dict[str, str]) -> dict[str, str]:
    skip = LABEL_COLUMNS + IDENTITY_COLUMNS
    return {k: v for k, v in row.items() if v and k not in skip}


def _row_outcome(db: Database, job_id: str, keys: list[str]) -> tuple[int, int]:
    """Return (ok, total) among the row's instance items."""
    with db.reader() as session:
        query = select(JobItem.outcome).where(JobItem.job_id == job_id, JobItem.key.in_(keys))
        outcomes = list(session.scalars(query))
    return sum(1 for o in outcomes if o in _OK), len(outcomes)


def _import_row(ctx: JobContext, service: PacsService, row: dict[str, str], key: str) -> None:
    node = service.node(ctx.params["node"])
    keys = _query_keys(row)
    if not keys:
        ctx.record(key, ItemOutcome.FAILED, "KO: the row has no query key")
        return
    returns = [c for c in IDENTITY_COLUMNS if c not in keys]
    studies = service.client(node).find(QueryLevel.STUDY, keys, returns)
    if not studies:
        ctx.record(key, ItemOutcome.MISSING, "KO: no study matches the row's keys")
        return
    for study in studies:
        if mismatch := identity_mismatch(row, study):
            reason = f"KO: identity check failed ({', '.join(mismatch)} differ)"
            ctx.record(key, ItemOutcome.FAILED, reason, {"studies": len(studies)})
            return
    origin = ctx.origin(
        OriginKind.PACS,
        remote_ae=node.ae_title,
        remote_host=node.host,
        project=row.get("project") or ctx.params.get("project"),
        subject_label=row.get("subject") or None,
        session_label=row.get("session") or None,
    )
    targets = [Target(QueryLevel.STUDY, s["StudyInstanceUID"]) for s in studies]
    ledger = _RowLedger(ctx, node.name)
    retrieve_targets(service.retriever(node, origin), targets, ledger, wait=False)
    ok, total = _row_outcome(ctx.intake.db, ctx.job_id, ledger.keys)
    detail = {"studies": len(studies), "instances": total, "ok": ok}
    if ok == total and total:
        ctx.record(key, ItemOutcome.STORED, f"OK: {ok} instance(s)", detail)
    else:
        ctx.record(key, ItemOutcome.FAILED, f"KO: {total - ok} of {total} not retrieved", detail)


class _RowLedger(JobLedger):
    """The job ledger, remembering which instance keys belong to the current row."""

    def __init__(self, ctx: JobContext, node: str) -> None:
        super().__init__(ctx, node)
        self.keys: list[str] = []

    def expect(self, keys: Any) -> None:
        """Declare and remember the row's instance keys."""
        listed = list(keys)
        self.keys.extend(listed)
        super().expect(listed)


@register(KIND)
def import_job(ctx: JobContext) -> None:
    """Run (or resume) a CSV mass import: one row at a time, each recorded OK or KO."""
    service = bound()
    rows: list[dict[str, str]] = ctx.params.get("rows") or []
    if not rows:
        raise PermanentError("the job has no rows")
    ctx.expect(row_key(i) for i in range(len(rows)))
    pending = set(ctx.pending())
    for index, row in enumerate(rows):
        key = row_key(index)
        if key not in pending or ctx.cancelled():
            continue
        try:
            _import_row(ctx, service, row, key)
        except WindowClosedError as exc:
            ctx.defer_until(exc.resume_at, f"waiting for the window of {exc.node}")
        except InvalidInputError as exc:
            ctx.record(key, ItemOutcome.FAILED, f"KO: {exc}")
        ctx.set_message(f"row {index + 1}/{len(rows)}")


def report_rows(db: Database, job_id: str, rows: list[dict[str, str]]) -> Iterator[dict[str, str]]:
    """Yield each CSV row with its status (OK, KO, PENDING) and reason."""
    keys = [row_key(i) for i in range(len(rows))]
    with db.reader() as session:
        query = select(JobItem.key, JobItem.outcome, JobItem.reason).where(
            JobItem.job_id == job_id, JobItem.key.like("row:%")
        )
        found = {k: (o, r) for k, o, r in session.execute(query)}
    for key, row in zip(keys, rows, strict=True):
        outcome, reason = found.get(key, (None, ""))
        status = "PENDING" if outcome is None else ("OK" if outcome in _OK else "KO")
        yield {"row": key[4:].lstrip("0"), **row, "status": status, "reason": reason or ""}


def report_csv(db: Database, job_id: str, rows: list[dict[str, str]]) -> str:
    """Return the per-row report as CSV text."""
    out = io.StringIO()
    columns = ["row", *dict.fromkeys(c for row in rows for c in row), "status", "reason"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(report_rows(db, job_id, rows))
    return out.getvalue()
