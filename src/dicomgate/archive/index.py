"""Index writes for one received instance: upsert the hierarchy, insert the instance.

Every function takes the session explicitly and never commits; the caller's unit of work does.
Upserts use INSERT ... ON CONFLICT DO NOTHING so concurrent writers of the same study (several
associations, several processes) converge on one row.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from typing import Any

from pydicom import Dataset
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from dicomgate.archive.models import (
    Change,
    Instance,
    Patient,
    Project,
    Series,
    StagingSession,
    Study,
    utcnow,
)
from dicomgate.dicom.header_values import us_value, value_text
from dicomgate.raw_sql import PerDialect, RawStatement, listed, one_of


def text(header: Dataset, keyword: str, limit: int = 64) -> str:
    """Return an attribute as text ('' when absent or unreadable), cut to ``limit``."""
    try:
        value = value_text(header, keyword)
    except Exception:  # a malformed value must not stop indexing
        return ""
    return "" if value is None else value[:limit]


def integer(header: Dataset, keyword: str) -> int | None:
    """Return an integer attribute, or None when absent or not a number."""
    try:
        value = us_value(header, keyword) if keyword in _BINARY else value_text(header, keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError, OverflowError):
        return None


_BINARY = frozenset({"Rows", "Columns"})  # US: pydicom unpacks them


@functools.cache
def _insert_ignore_statement(dialect: str, table: Any) -> Any:
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return dialect_insert(table).on_conflict_do_nothing()


def _insert_ignore(session: Session, model: type[Any], values: dict[str, Any]) -> None:
    # One statement per table and dialect, values bound at execution: compiled once, cached.
    dialect = session.get_bind().dialect.name
    session.connection().execute(_insert_ignore_statement(dialect, model.__table__), values)


def ensure_project(session: Session, project_id: str, name: str = "") -> None:
    """Create the project row when missing."""
    _insert_ignore(session, Project, {"id": project_id, "name": name or project_id})


_PATIENT_PK = select(Patient.pk).where(
    Patient.patient_id == bindparam("pid"), Patient.issuer == bindparam("issuer")
)
_STUDY_PK = select(Study.pk).where(Study.study_uid == bindparam("uid"))
_SERIES_PK = select(Series.pk).where(Series.series_uid == bindparam("uid"))


def _pk(session: Session, query: Any, **params: str) -> int:
    return int(session.connection().execute(query, params).scalar_one())


def upsert_patient(session: Session, header: Dataset) -> int:
    """Return the patient's pk, creating the row when new."""
    pid, issuer = text(header, "PatientID"), text(header, "IssuerOfPatientID")
    _insert_ignore(
        session,
        Patient,
        {
            "patient_id": pid,
            "issuer": issuer,
            "patient_name": text(header, "PatientName", 324),
            "birth_date": text(header, "PatientBirthDate", 16),
            "sex": text(header, "PatientSex", 16),
        },
    )
    return _pk(session, _PATIENT_PK, pid=pid, issuer=issuer)


def upsert_study(session: Session, header: Dataset, patient_pk: int) -> int:
    """Return the study's pk, creating the row when new."""
    uid = text(header, "StudyInstanceUID")
    _insert_ignore(
        session,
        Study,
        {
            "study_uid": uid,
            "patient_pk": patient_pk,
            "patient_id": text(header, "PatientID"),
            "patient_name": text(header, "PatientName", 324),
            "patient_birth_date": text(header, "PatientBirthDate", 16),
            "patient_sex": text(header, "PatientSex", 16),
            "study_date": text(header, "StudyDate", 16),
            "study_time": text(header, "StudyTime", 32),
            "accession_number": text(header, "AccessionNumber"),
            "study_id": text(header, "StudyID"),
            "study_description": text(header, "StudyDescription", 256),
            "referring_physician_name": text(header, "ReferringPhysicianName", 324),
        },
    )
    return _pk(session, _STUDY_PK, uid=uid)


def upsert_series(session: Session, header: Dataset, study_pk: int) -> int:
    """Return the series' pk, creating the row when new."""
    uid = text(header, "SeriesInstanceUID")
    _insert_ignore(
        session,
        Series,
        {
            "series_uid": uid,
            "study_pk": study_pk,
            "modality": text(header, "Modality", 16),
            "series_number": integer(header, "SeriesNumber"),
            "series_description": text(header, "SeriesDescription", 256),
            "body_part_examined": text(header, "BodyPartExamined"),
            "series_date": text(header, "SeriesDate", 16),
            "series_time": text(header, "SeriesTime", 32),
        },
    )
    return _pk(session, _SERIES_PK, uid=uid)


_TOUCH_STAGING = (
    update(StagingSession)
    .where(StagingSession.pk == bindparam("staging_pk"), StagingSession.status == "RECEIVING")
    .values(
        last_received_at=bindparam("now"),
        updated_at=bindparam("now"),
        instance_count=StagingSession.instance_count + bindparam("count"),
    )
)


def touch_staging_session(session: Session, staging_pk: int, count: int = 1) -> bool:
    """Count ``count`` more instances in a session; return False when it is no longer RECEIVING."""
    params = {"staging_pk": staging_pk, "now": utcnow(), "count": count}
    return _RAW_TOUCH_STAGING.rowcount(session, params) == 1


def staging_session_for(
    session: Session,
    source_key: str,
    study_uid: str,
    origin: dict[str, Any],
    counted: bool = True,
    count: int = 1,
) -> int:
    """Return the RECEIVING staging session of this source and study, opening one if needed.

    The session counts ``count`` more instances; ``counted=False`` (a conflicting duplicate
    kept aside) keeps the session open without counting one.
    """
    step = count if counted else 0
    query = select(StagingSession.pk).where(
        StagingSession.source_key == source_key,
        StagingSession.study_uid == study_uid,
        StagingSession.status == "RECEIVING",
    )
    found = session.scalars(query).first()
    now = utcnow()
    if found is not None:
        session.execute(
            update(StagingSession)
            .where(StagingSession.pk == found)
            .values(
                last_received_at=now,
                updated_at=now,
                instance_count=StagingSession.instance_count + step,
            )
        )
        return int(found)
    row = StagingSession(
        source_key=source_key,
        study_uid=study_uid,
        status="RECEIVING",
        project_id=origin.get("project"),
        origin=origin,
        instance_count=step,
        created_at=now,
        last_received_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return int(row.pk)


_INSERT_CHANGE = insert(Change.__table__)  # type: ignore[arg-type]  # Core, not ORM: no flush
_INSERT_INSTANCE = insert(Instance.__table__)  # type: ignore[arg-type]
# The three statements intake runs for every instance it stores, on the driver's cursor.
_RAW_TOUCH_STAGING = RawStatement(_TOUCH_STAGING)
_RAW_INSERT_CHANGE = RawStatement(
    _INSERT_CHANGE, ["change_type", "resource_type", "resource_pk", "created_at"]
)
_RAW_INSERT_INSTANCE = RawStatement(
    _INSERT_INSTANCE.returning(Instance.__table__.c.pk),
    [column.name for column in Instance.__table__.columns if column.name != "pk"],
)


def log_change(session: Session, change_type: str, resource_type: str, resource_pk: int) -> None:
    """Append one row to the change log."""
    values = {"change_type": change_type, "resource_type": resource_type, "created_at": utcnow()}
    _RAW_INSERT_CHANGE.rowcount(session, {**values, "resource_pk": resource_pk})


def log_changes(
    session: Session, change_type: str, resource_type: str, resource_pks: list[int]
) -> None:
    """Append one row to the change log per resource, in order (one statement)."""
    values = {"change_type": change_type, "resource_type": resource_type}
    rows = [{**values, "resource_pk": pk} for pk in resource_pks]
    if rows:
        session.connection().execute(_INSERT_CHANGE, rows)


def instance_row(header: Dataset, values: dict[str, Any]) -> dict[str, Any]:
    """Return the values of an instance row: from the header, then ``values``."""
    return {
        "sop_instance_uid": text(header, "SOPInstanceUID"),
        "sop_class_uid": text(header, "SOPClassUID"),
        "instance_number": integer(header, "InstanceNumber"),
        "rows": integer(header, "Rows"),
        "columns": integer(header, "Columns"),
        "number_of_frames": integer(header, "NumberOfFrames"),
        "received_at": dt.datetime.now(dt.UTC),
        **values,
    }


def add_instance(session: Session, header: Dataset, values: dict[str, Any]) -> int:
    """Insert the instance row (unique SOP Instance UID) and return its pk."""
    return int(_RAW_INSERT_INSTANCE.returned(session, instance_row(header, values)))


_INSERT_INSTANCES = _INSERT_INSTANCE.returning(
    Instance.__table__.c.pk,
    sort_by_parameter_order=True,
)


def add_instances(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert instance rows (from ``instance_row``) in one statement; return their pks in order.

    A SOP Instance UID that is stored already fails the whole statement (IntegrityError).
    """
    if not rows:
        return []
    result = session.connection().execute(_INSERT_INSTANCES, rows)
    return [int(pk) for pk in result.scalars()]


# Built once: a statement built per call cost more in SQLAlchemy's cache key than the lookup.
_STORED = PerDialect(
    lambda dialect: select(
        Instance.sop_instance_uid, Instance.pk, Instance.sha256, Instance.blob_key
    ).where(one_of(dialect, Instance.sop_instance_uid, "uids"))
)
Stored = tuple[int, str, str]  # an instance's pk, SHA-256 and blob key


def stored_instances(connection: Connection, uids: Iterable[str]) -> dict[str, Stored]:
    """Return the instances the index holds among ``uids``: UID -> (pk, SHA-256, blob key)."""
    wanted = sorted(set(uids))
    if not wanted:
        return {}
    dialect = connection.dialect.name
    rows = _STORED.of(dialect).rows(connection, {"uids": listed(dialect, wanted)})
    return {str(uid): (int(pk), str(digest), str(key)) for uid, pk, digest, key in rows}
