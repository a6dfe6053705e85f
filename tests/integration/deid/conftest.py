"""Fixtures for de-identification on the archive path: a review over real stores and a vault."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.models import Instance, StagingSession
from dicomgate.archive.projects import ensure_quarantine, sync_project
from dicomgate.archive.session_models import ArchivedSession
from dicomgate.archive.sessions import instances_query
from dicomgate.db import Database
from dicomgate.deid.vault import IdentityVault
from dicomgate.deid.vaultkey import VaultKey
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from dicomgate.pipeline import advance
from dicomgate.prearchive.context import Review, build_review
from dicomgate.settings import load_settings
from tests.unit.deid.deid_builders import to_bytes

RESEARCH = {"id": "RESEARCH", "deid": {"profile": {"name": "research"}}}


@dataclass
class Site:
    """A review over real stores, with helpers to import and look at the result."""

    review: Review
    key_file: Path

    @property
    def db(self) -> Database:
        return self.review.intake.db

    def vault(self, key: VaultKey | None = None) -> IdentityVault:
        deid = self.review.settings.deid
        path = deid.vault_path or self.review.settings.data_dir / "identity-vault.sqlite3"
        return IdentityVault(path, key or VaultKey.from_file(self.key_file))

    def send(self, datasets: list[Dataset], project: str, **origin: Any) -> None:
        job = secrets.token_hex(4)
        for ds in datasets:
            found = Origin(OriginKind.IMPORT, project=project, job_id=job, **origin)
            assert receive(self.review.intake, to_bytes(ds), found).ok

    def run(self) -> None:
        advance(self.review)

    def sessions(self, project: str) -> list[ArchivedSession]:
        with self.db.reader() as session:
            query = select(ArchivedSession).where(ArchivedSession.project_id == project)
            return list(session.scalars(query.order_by(ArchivedSession.pk)))

    def stored(self, archived: ArchivedSession) -> list[Dataset]:
        with self.db.reader() as session:
            keys = [row.blob_key for row in session.scalars(instances_query(archived.pk))]
        return [dcmread(BytesIO(self.review.intake.blobs.read(k))) for k in keys]

    def staging(self) -> list[StagingSession]:
        with self.db.reader() as session:
            return list(session.scalars(select(StagingSession).order_by(StagingSession.pk)))

    def blob_count(self) -> int:
        with self.db.reader() as session:
            return len(list(session.scalars(select(Instance.pk))))


BOTH_DATABASES = pytest.mark.parametrize(
    "site_db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""Run a test on PostgreSQL too (the others run on SQLite only, to keep the suite quick)."""


@pytest.fixture()
def site_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty index: SQLite, or PostgreSQL for tests marked ``BOTH_DATABASES``."""
    if getattr(request, "param", "sqlite") == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Database(url)
    upgrade(db)
    yield db
    db.dispose()


@pytest.fixture()
def make_site(site_db: Database, tmp_path: Path) -> Callable[..., Site]:
    """Return a builder: projects and site-wide deid options -> a Site over ``site_db``."""
    database = site_db

    def make(*projects: dict[str, Any], **deid: Any) -> Site:
        key_file = tmp_path / "vault.key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32))
        settings = load_settings(
            data_dir=tmp_path / "data",
            projects=list(projects),
            deid={"vault_key_file": key_file, **deid},
            stable_after=0,
        )
        with database.unit_of_work() as session:
            ensure_quarantine(session)
            sync_project(session, settings.default_project)
            for p in settings.projects:
                sync_project(session, p.id, p.name, p.description, p.archive_policy.value)
        intake = Intake(
            database,
            FilesystemBlobStore(tmp_path / "data" / "blobs"),
            FilesystemBlobStore(tmp_path / "data" / "set-aside"),
        )
        return Site(build_review(settings, intake), key_file)

    return make
