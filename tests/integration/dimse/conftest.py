"""Fixtures of the DIMSE access tests: a populated archive served by a receiver with Q/R."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from dicomgate.app import receiver_extensions
from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.models import Study
from dicomgate.auth.audit import AuditTrail
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.integration.dimse.corpus import Corpus, build
from tests.integration.dimse.dcmtk import StoreSCP

AE_TITLE = "DGTEST"


@pytest.fixture()
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty SQLite index (retrieve tests: their SQL is covered on PostgreSQL by
    the C-FIND tests and one retrieve test; peers, not dialects, are what they exercise)."""
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture()
def corpus(intake: Intake) -> Corpus:
    """The test corpus stored in a fresh archive."""
    return build(intake)


def serve(
    intake: Intake,
    audit: AuditTrail | None = None,
    auth: dict[str, Any] | None = None,
    processes: int = 1,
    **query_retrieve: Any,
) -> Receiver:
    """Start a receiver with the query/retrieve extension on a free port.

    ``auth`` is the ``auth`` settings block (peers, user identity); ``processes`` how many
    processes receive (the extension is rebuilt in each by ``app.receiver_extensions``).
    """
    settings = load_settings(
        dicom_port=0,
        ae_title=AE_TITLE,
        query_retrieve=query_retrieve,
        auth=auth or {},
        dicom_receiver={"processes": processes},
    )
    return Receiver(settings, intake, receiver_extensions, audit)


@pytest.fixture()
def qr_scp(intake: Intake, corpus: Corpus) -> Iterator[Receiver]:
    """A receiver serving the corpus, with no move destination."""
    server = serve(intake)
    yield server
    server.stop()


@pytest.fixture()
def audit(tmp_path: Path) -> Iterator[AuditTrail]:
    """An audit trail of its own for the test's receiver."""
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    yield trail
    trail.dispose()


@pytest.fixture()
def placed(intake: Intake, corpus: Corpus) -> dict[str, list[str]]:
    """The corpus archived into two projects: project -> its study UIDs."""
    where = {
        "LUNG": [corpus.studies[0], corpus.studies[2]],
        "BRAIN": [corpus.studies[1], corpus.jpeg_study],
    }
    with intake.db.unit_of_work() as session:
        for project, studies in where.items():
            ensure_project(session, project)
            session.execute(
                update(Study).where(Study.study_uid.in_(studies)).values(project_id=project)
            )
    return where


@pytest.fixture()
def storescp(tmp_path: Path) -> Iterator[StoreSCP]:
    """A dcmtk storescp to move to, stopped by its process id afterwards."""
    peer = StoreSCP(tmp_path / "storescp")
    yield peer
    peer.stop()
