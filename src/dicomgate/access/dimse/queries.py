"""Every index query of the DIMSE SCP, each taking the session explicitly.

C-FIND matches and C-MOVE/C-GET instance lists are restricted by :func:`visible` to the
projects the association may see (``None``: every project), so a study of another project
matches nothing, exactly like one that does not exist. Storage Commitment looks over the whole
index: it only confirms that instances the requester names by UID are safely stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, select
from sqlalchemy.orm import Session

from dicomgate.access.dimse.attributes import ATTRIBUTES, COMPUTED, UNIQUE_KEY, Kind
from dicomgate.access.dimse.identifiers import Level, Query
from dicomgate.access.dimse.matching import condition
from dicomgate.access.visibility import Visible
from dicomgate.access.visibility import visible as project_condition
from dicomgate.archive.models import Instance, Patient, Series, Study
from dicomgate.errors import InvalidInputError, TooManyMatchesError

_CHUNK = 500
_T = TypeVar("_T")
_S = TypeVar("_S", bound="Select[*tuple[Any, ...]]")


def visible(query: _S, projects: Visible) -> _S:
    """Restrict a query that includes ``Study`` to the studies of ``projects``."""
    if projects is None:
        return query
    return query.where(project_condition(Study.project_id, projects))


def _base(level: Level, columns: list[Any], projects: Visible) -> Select[Any]:
    if level is Level.PATIENT:
        studies = select(Study.pk).where(Study.patient_pk == Patient.pk)
        has_study = exists(visible(studies, projects))
        return select(Patient.pk, *columns).where(has_study).order_by(Patient.pk)
    if level is Level.STUDY:
        return visible(select(Study.pk, *columns), projects).order_by(Study.pk)
    if level is Level.SERIES:
        query = select(Series.pk, *columns).join(Study, Series.study_pk == Study.pk)
        return visible(query, projects).order_by(Series.pk)
    query = (
        select(Instance.pk, *columns)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
    )
    return visible(query, projects).order_by(Instance.pk)


def _in_scope(query: Query) -> dict[str, Any]:
    """Return keyword -> column of the known keys at or above the query's level."""
    columns = {}
    for key in query.keys:
        attribute = ATTRIBUTES.get(key.keyword)
        if attribute is None or attribute.level.depth > query.level.depth:
            continue
        column = attribute.column_at(query.level)
        if column is not None:
            columns[key.keyword] = column
    return columns


def _modalities_condition(value: str) -> ColumnElement[bool]:
    wanted = [m.strip() for m in value.split("\\") if m.strip()]
    return exists().where(Series.study_pk == Study.pk, Series.modality.in_(wanted))


def _conditions(session: Session, query: Query, columns: dict[str, Any]) -> list[Any]:
    conditions = []
    for key in query.keys:
        if key.keyword in columns:
            kind = ATTRIBUTES[key.keyword].kind
            found = condition(session, columns[key.keyword], kind, key.value, key.keyword)
            if found is not None:
                conditions.append(found)
        elif key.keyword == "ModalitiesInStudy" and query.level is Level.STUDY and key.value:
            conditions.append(_modalities_condition(key.value))
    return conditions


def find(
    session: Session, query: Query, limit: int, projects: Visible = None
) -> list[dict[str, Any]]:
    """Return the matches of a C-FIND: keyword -> value for every known requested key.

    Only studies of ``projects`` match (``None``: every project).

    Raises
    ------
    InvalidInputError
        When a matching value is not valid for its attribute.
    TooManyMatchesError
        When more than ``limit`` records match.
    """
    columns = _in_scope(query)
    names = list(columns)
    statement = _base(query.level, [columns[n] for n in names], projects)
    statement = statement.where(*_conditions(session, query, columns)).limit(limit + 1)
    rows = session.execute(statement).all()
    if len(rows) > limit:
        raise TooManyMatchesError(f"more than {limit} matches; narrow the query")
    matches = [{"_pk": row[0], **dict(zip(names, row[1:], strict=True))} for row in rows]
    wanted = {k.keyword for k in query.keys if COMPUTED.get(k.keyword) is query.level}
    if wanted and matches:
        _add_computed(session, query.level, matches, wanted, projects)
    return matches


def _chunks(items: Sequence[_T]) -> Iterable[list[_T]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])


def _grouped(session: Session, statement: Select[Any], pks: Sequence[int]) -> dict[int, Any]:
    """Run ``statement`` (first column a pk, filtered by ``IN :pks``) over chunks of pks."""
    result: dict[int, Any] = {}
    for chunk in _chunks(pks):
        for pk, value in session.execute(statement, {"pks": chunk}):
            result[int(pk)] = value
    return result


def _count(group: Any, counted: Any, joins: list[tuple[Any, Any]]) -> Select[Any]:
    statement = select(group, func.count(func.distinct(counted)))
    for table, on in joins:
        statement = statement.join(table, on)
    return statement.where(group.in_(bindparam("pks", expanding=True))).group_by(group)


_SERIES_OF_STUDY = (Series, Series.study_pk == Study.pk)
_INSTANCES_OF_SERIES = (Instance, Instance.series_pk == Series.pk)


def _counters(level: Level, projects: Visible) -> dict[str, Select[Any]]:
    if level is Level.PATIENT:  # a patient's studies in other projects are not counted
        counters = {
            "NumberOfPatientRelatedStudies": _count(Study.patient_pk, Study.pk, []),
            "NumberOfPatientRelatedSeries": _count(Study.patient_pk, Series.pk, [_SERIES_OF_STUDY]),
            "NumberOfPatientRelatedInstances": _count(
                Study.patient_pk, Instance.pk, [_SERIES_OF_STUDY, _INSTANCES_OF_SERIES]
            ),
        }
        return {name: visible(statement, projects) for name, statement in counters.items()}
    if level is Level.STUDY:
        return {
            "NumberOfStudyRelatedSeries": _count(Series.study_pk, Series.pk, []),
            "NumberOfStudyRelatedInstances": _count(
                Series.study_pk, Instance.pk, [_INSTANCES_OF_SERIES]
            ),
        }
    return {"NumberOfSeriesRelatedInstances": _count(Instance.series_pk, Instance.pk, [])}


def _distinct_values(
    session: Session, group: Any, value: Any, joins: list[tuple[Any, Any]], pks: Sequence[int]
) -> dict[int, list[str]]:
    statement = select(group, value).distinct()
    for table, on in joins:
        statement = statement.join(table, on)
    statement = statement.where(group.in_(bindparam("pks", expanding=True)))
    found: dict[int, set[str]] = defaultdict(set)
    for chunk in _chunks(pks):
        for pk, item in session.execute(statement, {"pks": chunk}):
            if item:
                found[int(pk)].add(str(item))
    return {pk: sorted(items) for pk, items in found.items()}


def _add_computed(
    session: Session,
    level: Level,
    matches: list[dict[str, Any]],
    wanted: set[str],
    projects: Visible,
) -> None:
    pks = [int(m["_pk"]) for m in matches]
    values: dict[str, dict[int, Any]] = {}
    for name, statement in _counters(level, projects).items():
        if name in wanted:
            values[name] = _grouped(session, statement, pks)
    if "ModalitiesInStudy" in wanted:
        values["ModalitiesInStudy"] = _distinct_values(
            session, Series.study_pk, Series.modality, [], pks
        )
    if "SOPClassesInStudy" in wanted:
        values["SOPClassesInStudy"] = _distinct_values(
            session, Series.study_pk, Instance.sop_class_uid, [_INSTANCES_OF_SERIES], pks
        )
    for match in matches:
        for name, by_pk in values.items():
            default: Any = [] if name in ("ModalitiesInStudy", "SOPClassesInStudy") else 0
            match[name] = by_pk.get(int(match["_pk"]), default)


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """What a C-MOVE/C-GET sub-operation needs to send one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    study_uid: str = ""


def instances_to_retrieve(
    session: Session, query: Query, projects: Visible = None
) -> list[StoredInstance]:
    """Return the instances a C-MOVE/C-GET identifier names, in study/series/number order.

    Only instances of studies in ``projects`` are named (``None``: every project).

    Only the unique keys are matched (PS3.4 C.4.2.1.4), each a single value or a list; the
    key of the requested level must be given and no key may hold a wildcard, so an identifier
    never retrieves the whole archive by accident.

    Raises
    ------
    InvalidInputError
        When the unique key of the level is missing or empty, or a key holds a wildcard.
    """
    own = UNIQUE_KEY[query.level]
    if not query.value(own):
        raise InvalidInputError(f"{own} is required to retrieve at {query.level} level")
    for keyword in UNIQUE_KEY.values():
        if any(c in query.value(keyword) for c in "*?"):
            raise InvalidInputError(f"{keyword} must not hold wildcards in a retrieve")
    statement = (
        select(
            Instance.sop_class_uid,
            Instance.sop_instance_uid,
            Instance.transfer_syntax_uid,
            Instance.blob_key,
            Instance.size,
            Study.study_uid,
        )
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
    )
    for level, keyword in UNIQUE_KEY.items():
        value = query.value(keyword)
        if level.depth <= query.level.depth and value:
            column = ATTRIBUTES[keyword].column
            matched = condition(session, column, Kind.UID, value, keyword)
            statement = statement if matched is None else statement.where(matched)
    statement = visible(statement, projects).order_by(
        Study.pk, Series.series_number, Series.pk, Instance.instance_number, Instance.pk
    )
    return [StoredInstance(*row) for row in session.execute(statement)]


def stored_classes(session: Session, sop_instance_uids: Sequence[str]) -> dict[str, str]:
    """Return SOP Instance UID -> SOP Class UID for those of ``sop_instance_uids`` in the index."""
    statement = (
        select(Instance.sop_instance_uid, Instance.sop_class_uid)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
    )
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(sop_instance_uids))
    for uids in _chunks(unique):
        query = statement.where(Instance.sop_instance_uid.in_(uids))
        found.update({str(uid): str(cls) for uid, cls in session.execute(query)})
    return found
