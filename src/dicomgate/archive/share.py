"""The ``share_session`` job: de-identify an archived session into another project.

The "pseudonymise data" step of two-tier sites: a session of an identified project (or any
project) is de-identified with the *target's* profile and pseudonym scheme and archived there;
the source stays untouched. One job item per source instance (keyed by its SOP Instance UID);
the copy is stored in one transaction, so a run resumed after a crash either finds it
committed (items become ``already_stored``) or starts again. Burned-in text suspected without
an allowance or mask rejects the items (the original is safe where it is); a hold reason
(no pseudonym, a reference that would break) fails them with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dicomgate.archive.deid_index import Copy, store_shared
from dicomgate.archive.deidentify import (
    QuarantineError,
    Staged,
    deidentify_copies,
    project_deid,
    read_blob,
    removed_on_failure,
)
from dicomgate.archive.models import Instance
from dicomgate.archive.sessions import instances_query, require_session
from dicomgate.auth.guard import require
from dicomgate.auth.roles import Caller, Permission
from dicomgate.deid import TABLE_EDITION
from dicomgate.deid.subjects import subject_identity
from dicomgate.errors import (
    ConflictError,
    HeldForReviewError,
    NotFoundError,
    PermanentError,
)
from dicomgate.jobs import ItemOutcome, JobContext, register
from dicomgate.prearchive.context import Review

KIND = "share_session"
_PROJECT = r"^[A-Za-z0-9_-]{1,64}$"


class ShareParams(BaseModel):
    """Parameters of a ``share_session`` job."""

    model_config = ConfigDict(extra="forbid")

    source_project: str = Field(pattern=_PROJECT)
    session: str = Field(min_length=1, max_length=64)
    target_project: str = Field(pattern=_PROJECT)


def authorise_share(caller: Caller, params: ShareParams) -> None:
    """Raise unless the caller may share: ``write`` in the source and in the target project.

    Raises
    ------
    NotFoundError
        The caller may not see the source project (as for a missing session) or the target.
    ForbiddenError
        They may see one but not write in it.
    """
    source, target = params.source_project, params.target_project
    require(caller, source, Permission.WRITE, f"no session {params.session} in project {source}")
    require(caller, target, Permission.WRITE)


def check_share(review: Review, params: ShareParams) -> None:
    """Refuse at submission what the job would refuse (unknown session, no target profile).

    Raises
    ------
    NotFoundError
        The source session does not exist.
    ConflictError
        The target has no de-identification profile, or is the source itself.
    """
    if params.target_project == params.source_project:
        raise ConflictError("a session is shared into another project, not its own")
    if project_deid(review, params.target_project) is None:
        raise ConflictError(
            f"project {params.target_project} has no de-identification profile to share into"
        )
    with review.intake.db.reader() as session:
        require_session(session, params.source_project, params.session)


def _source(review: Review, params: ShareParams) -> tuple[list[str], Staged]:
    with review.intake.db.reader() as session:
        archived = require_session(session, params.source_project, params.session)
        query = instances_query(archived.pk).order_by(Instance.pk)
        rows = [(r.sop_instance_uid, r.blob_key) for r in session.scalars(query)]
    origin = {"kind": "share", **params.model_dump()}
    headers = [read_blob(review, key, stop_before_pixels=True) for _, key in rows]
    return [uid for uid, _ in rows], Staged(origin, [key for _, key in rows], headers)


def share_handler(review: Review) -> Callable[[JobContext], None]:
    """Return the ``share_session`` handler bound to the site's review (settings, stores)."""

    def handle(ctx: JobContext) -> None:
        try:
            params = ShareParams.model_validate(ctx.params)
            check_share(review, params)
            uids, staged = _source(review, params)
        except ValidationError as exc:
            raise PermanentError(f"invalid share_session parameters: {exc.error_count()}") from None
        except (NotFoundError, ConflictError) as exc:
            raise PermanentError(str(exc)) from None
        if not ctx.planned:
            ctx.expect(uids)
            ctx.log(f"sharing {len(uids)} instances; PS3.15 {TABLE_EDITION} Table E.1-1")
        pending = set(ctx.pending())
        if pending and staged.blob_keys:
            _share(ctx, review, params, staged, uids, pending)

    return handle


def _share(
    ctx: JobContext,
    review: Review,
    params: ShareParams,
    staged: Staged,
    uids: list[str],
    pending: set[str],
) -> None:
    config = project_deid(review, params.target_project)
    assert config is not None  # check_share
    identity = subject_identity(staged.headers[0])
    try:
        ready = deidentify_copies(
            review, params.target_project, config, identity, staged, f"share-{ctx.job_id}"
        )
    except QuarantineError as exc:
        return _record_all(ctx, pending, ItemOutcome.REJECTED, str(exc))
    except HeldForReviewError as exc:
        return _record_all(ctx, pending, ItemOutcome.FAILED, str(exc))
    # The source session's label comes from its headers (Patient ID by default): it stays out
    # of the target project's rows; the job (in the source's records) names it.
    origin = {k: v for k, v in staged.origin.items() if k != "session"}
    origin = {**origin, "job_id": ctx.job_id, **ready.details}
    with removed_on_failure(review, ready.copies), review.intake.db.unit_of_work() as session:
        _, unused = store_shared(
            session, ready.copies, ready.keys, params.target_project, origin, ctx.owner
        )
    for key in unused:
        review.intake.blobs.remove(key)
    _record_copies(ctx, uids, ready.copies, set(unused), pending)


def _record_all(ctx: JobContext, keys: set[str], outcome: ItemOutcome, reason: str) -> None:
    for key in sorted(keys):
        ctx.record(key, outcome, reason)


def _record_copies(
    ctx: JobContext, uids: list[str], copies: list[Copy], unused: set[str], pending: set[str]
) -> None:
    for uid, copy in zip(uids, copies, strict=True):
        if uid not in pending:
            continue
        outcome = ItemOutcome.ALREADY_STORED if copy.blob_key in unused else ItemOutcome.STORED
        detail = {"sop_instance_uid": str(copy.header.SOPInstanceUID), "edition": TABLE_EDITION}
        ctx.record(uid, outcome, "", detail)


def bind_share(review: Review) -> None:
    """Register the ``share_session`` handler for this site (the composition root calls it)."""
    register(KIND)(share_handler(review))
