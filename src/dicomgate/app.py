"""Composition root: Settings -> database, stores, intake, receiver, spine, HTTP app."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from dicomgate import __version__
from dicomgate.access.api import create_api, install_error_handlers
from dicomgate.access.deid_api import create_deid_api
from dicomgate.access.projects_api import create_projects_api
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.projects import ensure_quarantine, sync_project
from dicomgate.archive.reconcile import ReconcileReport, reconcile
from dicomgate.db import Database
from dicomgate.deid.config import open_vault
from dicomgate.deid.errors import DeidError
from dicomgate.errors import ConfigError
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.api import create_jobs_router
from dicomgate.jobs.queue import Queue, make_huey
from dicomgate.pipeline import advance
from dicomgate.prearchive.api import create_prearchive_api
from dicomgate.prearchive.context import Review, build_review
from dicomgate.prearchive.store import recover_archiving
from dicomgate.settings import Settings
from dicomgate.sources.inbox_api import create_inbox_router
from dicomgate.sources.scp import Receiver

log = logging.getLogger(__name__)


def open_intake(settings: Settings) -> Intake:
    """Create the data folder, migrate the index and return the intake stores."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    upgrade(db)
    with db.unit_of_work() as session:
        ensure_project(session, settings.default_project)
        ensure_quarantine(session)
        for project in settings.projects:
            policy = project.archive_policy.value
            sync_project(session, project.id, project.name, project.description, policy)
    return Intake(
        db,
        FilesystemBlobStore(settings.data_dir / "blobs"),
        FilesystemBlobStore(settings.data_dir / "set-aside"),
        settings.duplicate_policy,
    )


def open_jobs(settings: Settings, intake: Intake, queue: bool = True) -> Jobs:
    """Return the jobs facade: on the configured Huey queue, or inline (``queue=False``)."""
    from dicomgate.archive.share import bind_share
    from dicomgate.sources import files  # noqa: F401  (registers the import_files job kind)

    bind_share(build_review(settings, intake))  # the share_session job kind, for this site

    if not queue:
        return Jobs(intake, settings.jobs)
    huey = make_huey(settings.jobs, settings.data_dir, settings.effective_database_url)
    return Jobs(intake, settings.jobs, Queue(huey))


def check_vault(settings: Settings) -> None:
    """Open the identity vault once when a project de-identifies: a bad key fails the start.

    Raises
    ------
    ConfigError
        Naming the vault setting (``deid.vault_key_file`` / ``deid.vault_key_env``) at fault.
    """
    if not any(project.deid is not None for project in settings.projects):
        return
    try:
        open_vault(settings.deid, settings.data_dir).close()
    except DeidError as exc:
        raise ConfigError(f"identity vault: {exc}") from exc


@dataclass
class Service:
    """Everything ``dicomgate serve`` runs, started and stopped together."""

    settings: Settings
    intake: Intake
    receiver: Receiver | None = None
    reconciled: ReconcileReport | None = None
    review: Review | None = None
    jobs: Jobs = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _spine: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.jobs = open_jobs(self.settings, self.intake)

    def start(self) -> None:
        """Reconcile, then start the DICOM receiver, the spine thread and the job workers."""
        check_vault(self.settings)
        self.reconciled = reconcile(self.intake.db, self.intake.blobs, self.intake.set_aside)
        self.review = self.review or build_review(self.settings, self.intake)
        with self.intake.db.unit_of_work() as session:
            recover_archiving(session)
        self.receiver = Receiver(self.settings, self.intake)
        self._spine = threading.Thread(target=self._run_spine, name="spine", daemon=True)
        self._spine.start()
        self.jobs.start()
        log.info(
            "DICOM receiver %s listening on port %s", self.settings.ae_title, self.receiver.port
        )

    def _run_spine(self) -> None:
        assert self.review is not None
        while not self._stop.wait(self.settings.stability_check_interval):
            try:
                advance(self.review)
            except Exception:
                log.exception("spine pass failed; retrying at the next interval")

    def stop(self) -> None:
        """Stop the job workers, the receiver and the spine."""
        self._stop.set()
        self.jobs.stop()
        if self.receiver:
            self.receiver.stop()
        if self._spine:
            self._spine.join(timeout=10)


def create_app(service: Service) -> FastAPI:
    """Return the HTTP application; the service starts and stops with it."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="dicomgate", version=__version__, lifespan=lifespan)
    app.include_router(create_api(service.intake.db, service.intake.blobs))
    service.review = service.review or build_review(service.settings, service.intake)
    app.include_router(create_projects_api(service.intake.db))
    app.include_router(create_prearchive_api(service.review))
    app.include_router(create_jobs_router(service.jobs))
    app.include_router(create_deid_api(service.review, service.jobs))
    app.include_router(
        create_inbox_router(service.jobs, service.intake.db, service.settings.jobs.inbox_root)
    )
    install_error_handlers(app)
    return app
