"""Planted fake PHI and the readers that search the index for it (de-identification tests)."""

from __future__ import annotations

import json

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomgate.archive.models import Base, Instance, Patient, Series, StagingSession, Study
from dicomgate.archive.session_models import (
    ArchivedSession,
    EquipmentSeen,
    PrearchiveAction,
    StagingReview,
)
from tests.integration.deid.conftest import Site
from tests.unit.deid.deid_builders import ROOT, ct_slice

PHI = (
    "ZQXDOE",  # patient's last name (and in the study description)
    "ZQXJOHN",  # first name
    "ZQXSMITH",  # birth name
    "PIDQ778899",  # Patient ID
    "OPIDQ5566",  # Other Patient IDs
    "ACCQ4455",  # Accession Number
    "STIDQ321",  # Study ID
    "19600215",  # birth date
    "1960-02-15",
    "20240312",  # study, series, content dates
    "2024-03-12",
    "ZQXGENERAL",  # institution name
    "ZQXSTREET",  # institution address
    "ZQXSTATION",  # station name
    "SNQ998877",  # device serial number
    "ZQXWELBY",  # referring physician
    "ZQXOPERATOR",  # operator
    "ZQXPERFORMER",  # performing physician
    ROOT,  # every original UID starts with it
)


def phi_study() -> list[Dataset]:
    """Return two CT slices carrying the planted PHI everywhere the index might copy it."""
    slices = [ct_slice(0), ct_slice(1)]
    for ds in slices:
        ds.PatientBirthName = "ZQXSMITH"
        ds.OtherPatientIDs = "OPIDQ5566"
        ds.StudyID = "STIDQ321"
        ds.InstitutionAddress = "1 ZQXSTREET"
        ds.OperatorsName = "ZQXOPERATOR^A"
        ds.PerformingPhysicianName = "ZQXPERFORMER^B"
        ds.SeriesDescription = "ZQXDOE chest"
    return slices


def index_rows(site: Site) -> dict[str, list[str]]:
    """Return every row of every table of the index, as JSON text, by table."""
    dumped: dict[str, list[str]] = {}
    with site.db.reader() as session:
        for table in Base.metadata.sorted_tables:
            rows = session.execute(select(table)).mappings()
            dumped[table.name] = [json.dumps(dict(r), default=str) for r in rows]
    return dumped


def leaks(text: str) -> list[str]:
    """Return the planted PHI values found in ``text`` (case-insensitive)."""
    upper = text.upper()
    return [phi for phi in PHI if phi.upper() in upper]


def project_rows(site: Site, project: str) -> list[str]:
    """Return every index row linked to ``project``, as JSON text."""
    with site.db.reader() as session:
        stagings = [s.pk for s in session.scalars(select(StagingSession))
                    if s.project_id == project]  # fmt: skip
        studies = list(session.scalars(select(Study).where(Study.project_id == project)))
        series = list(
            session.scalars(select(Series).where(Series.study_pk.in_([s.pk for s in studies])))
        )
        rows: list[object] = [
            *session.scalars(select(StagingSession).where(StagingSession.pk.in_(stagings))),
            *session.scalars(select(StagingReview).where(StagingReview.staging_pk.in_(stagings))),
            *session.scalars(select(ArchivedSession).where(ArchivedSession.project_id == project)),
            *session.scalars(select(EquipmentSeen).where(EquipmentSeen.project_id == project)),
            *session.scalars(
                select(PrearchiveAction).where(
                    (PrearchiveAction.project_id == project)
                    | PrearchiveAction.staging_pk.in_(stagings)
                )
            ),
            *studies,
            *series,
            *session.scalars(select(Instance).where(Instance.staging_pk.in_(stagings))),
            *session.scalars(
                select(Patient).where(Patient.pk.in_([s.patient_pk for s in studies]))
            ),
        ]
        return [
            json.dumps({c.key: getattr(r, c.key) for c in r.__table__.columns}, default=str)  # type: ignore[attr-defined]
            for r in rows
        ]
