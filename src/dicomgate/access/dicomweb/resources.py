"""Which stored instances a DICOMweb path names, read from the index with an explicit session.

Every DICOMweb read goes through :func:`restrict` (QIDO too), so the project filter that the
auth issue brings is added in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeAlias, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance, Series, Study
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class Scope:
    """What the caller may see: ``None`` means every project."""

    projects: frozenset[str] | None = None


EVERYTHING = Scope()


AnySelect: TypeAlias = Select[*tuple[Any, ...]]
SelectT = TypeVar("SelectT", bound=AnySelect)


def restrict(query: SelectT, scope: Scope) -> SelectT:
    """Limit a query that selects from ``studies`` to the studies ``scope`` may see."""
    if scope.projects is None:
        return query
    return query.where(Study.project_id.in_(sorted(scope.projects)))


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance a request names: its UIDs, where its bytes are, its encoding."""

    pk: int
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    sha256: str
    number_of_frames: int | None


@dataclass(frozen=True, slots=True)
class Target:
    """A study, optionally one series of it, optionally one instance of that series."""

    study: str
    series: str | None = None
    instance: str | None = None

    def __post_init__(self) -> None:
        for uid in (self.study, self.series, self.instance):
            if uid is not None and not is_valid_uid(uid):
                raise NotFoundError("no such resource: a path segment is not a UID")


@cache
def _select() -> AnySelect:
    return (
        select(
            Instance.pk,
            Study.study_uid,
            Series.series_uid,
            Instance.sop_instance_uid,
            Instance.sop_class_uid,
            Instance.transfer_syntax_uid,
            Instance.blob_key,
            Instance.size,
            Instance.sha256,
            Instance.number_of_frames,
        )
        .select_from(Study)
        .join(Series, Series.study_pk == Study.pk)
        .join(Instance, Instance.series_pk == Series.pk)
    )


def by_pk(session: Session, pks: Sequence[int]) -> list[StoredInstance]:
    """Return the instances with these index keys (no scope: for internal preparation)."""
    rows = session.execute(_select().where(Instance.pk.in_(pks)))
    return [StoredInstance(**row._asdict()) for row in rows]


def instances(session: Session, target: Target, scope: Scope) -> list[StoredInstance]:
    """Return the instances ``target`` names, in series then instance number order.

    Raises
    ------
    NotFoundError
        When nothing visible to ``scope`` matches.
    """
    query = (
        _select()
        .where(Study.study_uid == target.study)
        .order_by(Series.series_number, Series.pk, Instance.instance_number, Instance.pk)
    )
    if target.series is not None:
        query = query.where(Series.series_uid == target.series)
    if target.instance is not None:
        query = query.where(Instance.sop_instance_uid == target.instance)
    rows = [StoredInstance(**row._asdict()) for row in session.execute(restrict(query, scope))]
    if not rows:
        raise NotFoundError("no such resource")
    return rows
