"""The ``pacs_retrieve`` job: patients, studies or series from a remote node into intake.

Items are SOP Instance UIDs (from the IMAGE-level find) and ``<LEVEL>:<uid>`` for a target the
node knows nothing about. Outside the node's window the job WAITs until the next opening; a
run after a crash or a deferral retrieves only what has no outcome yet.

The composition root binds the process's :class:`PacsService` with :func:`bind` (the handler
gets only a ``JobContext``; the service holds the settings and the shared politeness rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dicomgate.archive.models import Project
from dicomgate.auth.guard import require_import
from dicomgate.auth.roles import Caller
from dicomgate.dicom.remote import RetrieveCounts
from dicomgate.errors import InvalidInputError, NotFoundError, PermanentError, WindowClosedError
from dicomgate.intake.origin import OriginKind
from dicomgate.intake.receive import ReceiveResult
from dicomgate.jobs import ItemOutcome, JobContext, Jobs, register
from dicomgate.sources.pacs.batch import Target, retrieve_targets, target_from
from dicomgate.sources.pacs.ledger import add_request
from dicomgate.sources.pacs.service import PacsService

KIND = "pacs_retrieve"
_bound: list[PacsService] = []


def bind(service: PacsService) -> None:
    """Make ``service`` the one the PACS job handlers of this process use."""
    _bound[:] = [service]


def bound() -> PacsService:
    """Return the bound service.

    Raises
    ------
    PermanentError
        When this process has none (a worker started without the PACS source).
    """
    if not _bound:
        raise PermanentError("this process has no PACS service bound")
    return _bound[0]


class RetrieveParams(BaseModel):
    """Parameters of a ``pacs_retrieve`` job."""

    model_config = ConfigDict(extra="forbid")

    node: str
    targets: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)
    project: str | None = None
    subject: str | None = Field(default=None, max_length=64)
    session: str | None = Field(default=None, max_length=64)


class JobLedger:
    """A retrieve ledger over a job's items, log and the request table."""

    def __init__(self, ctx: JobContext, node: str) -> None:
        self.ctx = ctx
        self.node = node

    def expect(self, keys: Any) -> None:
        """Declare expected items."""
        self.ctx.expect(keys)

    def pending(self) -> list[str]:
        """Return items without an outcome."""
        return self.ctx.pending()

    def record_receives(self, results: Mapping[str, ReceiveResult]) -> None:
        """Record arrived instances in one transaction (one commit per series, not per item)."""
        self.ctx.record_many([self.ctx.receive_record(k, r) for k, r in results.items()])

    def record_missing(self, key: str, reason: str, detail: dict[str, Any]) -> None:
        """Record an instance that did not arrive."""
        self.ctx.record(key, ItemOutcome.MISSING, reason, detail)

    def record_request(self, series_uid: str, counts: RetrieveCounts) -> None:
        """Log one request with its sub-operation counts (table and job log)."""
        with self.ctx.intake.db.unit_of_work() as session:
            add_request(session, self.ctx.job_id, self.node, series_uid, counts)
        c = counts
        self.ctx.log(
            f"{c.method} series {series_uid or '-'}: status 0x{c.status:04X}, completed "
            f"{c.completed}, failed {c.failed}, warning {c.warning}"
            + (f", {c.error}" if c.error else "")
        )

    def log(self, message: str) -> None:
        """Add a job log line."""
        self.ctx.log(message)

    def cancelled(self) -> bool:
        """Return True once the job is being cancelled."""
        return self.ctx.cancelled()


def check_params(service: PacsService, params: dict[str, Any]) -> RetrieveParams:
    """Validate retrieve parameters against the configured nodes and existing projects.

    Raises
    ------
    InvalidInputError
        On bad parameters, an unknown node or project (the message names which).
    """
    try:
        parsed = RetrieveParams.model_validate(params)
    except ValidationError as exc:
        raise InvalidInputError(f"retrieve parameters: {exc.errors()[0]['msg']}") from None
    try:
        service.node(parsed.node)
    except NotFoundError as exc:
        raise InvalidInputError(str(exc)) from None
    for target in parsed.targets:
        target_from(target)
    if parsed.project is not None:
        with service.intake.db.reader() as session:
            if session.get(Project, parsed.project) is None:
                raise InvalidInputError(f"no project {parsed.project!r}")
    return parsed


def require_import_into(caller: Caller, project: str | None) -> None:
    """Raise unless the caller may retrieve into ``project`` (``auth.guard.require_import``).

    A project the caller may not see is refused like one that does not exist (400).
    """
    try:
        require_import(caller, project, f"no project {project!r}")
    except NotFoundError as exc:
        raise InvalidInputError(str(exc)) from None


def submit_retrieve(
    jobs: Jobs, service: PacsService, params: dict[str, Any], caller: Caller
) -> str:
    """Check ``params`` and submit a ``pacs_retrieve`` job owned by ``caller``; return its id.

    The caller needs ``write`` in the target project (site admins may leave it to routing).
    """
    parsed = check_params(service, params)
    require_import_into(caller, parsed.project)
    return jobs.submit(KIND, parsed.model_dump(), caller.name)


@register(KIND)
def retrieve_job(ctx: JobContext) -> None:
    """Run (or resume) a retrieve job."""
    service = bound()
    try:
        params = check_params(service, ctx.params)
    except InvalidInputError as exc:
        raise PermanentError(str(exc)) from None
    node = service.node(params.node)
    origin = ctx.origin(
        OriginKind.PACS,
        remote_ae=node.ae_title,
        remote_host=node.host,
        project=params.project,
        subject_label=params.subject,
        session_label=params.session,
    )
    targets: list[Target] = [target_from(t) for t in params.targets]
    done = [0]

    def progress(_target: Target, _count: int) -> None:
        done[0] += 1
        ctx.set_message(f"{done[0]}/{len(targets)} targets retrieved")

    try:
        retrieve_targets(
            service.retriever(node, origin), targets, JobLedger(ctx, node.name), False, progress
        )
    except WindowClosedError as exc:
        ctx.log(f"node {node.name}: window closed, waiting until {exc.resume_at.isoformat()}")
        ctx.defer_until(exc.resume_at, f"waiting for the window of {node.name}")
