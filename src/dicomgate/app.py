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
from dicomgate.access.dicomweb.metadata import MetadataFollower
from dicomgate.access.dicomweb.router import create_dicomweb
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.reconcile import ReconcileReport, reconcile
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.pipeline import advance
from dicomgate.settings import Settings
from dicomgate.sources.scp import Receiver
from dicomgate.sources.stow import StowSettings, create_stow

log = logging.getLogger(__name__)


def open_intake(settings: Settings) -> Intake:
    """Create the data folder, migrate the index and return the intake stores."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.effective_database_url)
    upgrade(db)
    with db.unit_of_work() as session:
        ensure_project(session, settings.default_project)
        for project in settings.projects:
            ensure_project(session, project.id, project.name)
    return Intake(
        db,
        FilesystemBlobStore(settings.data_dir / "blobs"),
        FilesystemBlobStore(settings.data_dir / "set-aside"),
        settings.duplicate_policy,
    )


@dataclass
class Service:
    """Everything ``dicomgate serve`` runs, started and stopped together."""

    settings: Settings
    intake: Intake
    receiver: Receiver | None = None
    reconciled: ReconcileReport | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _spine: threading.Thread | None = None
    _metadata: MetadataFollower | None = None

    def start(self) -> None:
        """Reconcile, then start the DICOM receiver and the spine thread."""
        self.reconciled = reconcile(self.intake.db, self.intake.blobs, self.intake.set_aside)
        self.receiver = Receiver(self.settings, self.intake)
        self._spine = threading.Thread(target=self._run_spine, name="spine", daemon=True)
        self._spine.start()
        self._start_metadata()
        log.info(
            "DICOM receiver %s listening on port %s", self.settings.ae_title, self.receiver.port
        )

    def _run_spine(self) -> None:
        while not self._stop.wait(self.settings.stability_check_interval):
            try:
                advance(self.intake.db, self.settings.stable_after, self.settings.default_project)
            except Exception:
                log.exception("spine pass failed; retrying at the next interval")

    def _start_metadata(self) -> None:
        options = self.settings.dicomweb
        if options.enabled and options.prepare_metadata:
            self._metadata = MetadataFollower(
                self.intake.db,
                self.intake.blobs,
                options.prepare_interval,
                options.prepare_batch,
                options.bulk_data_threshold,
            )
            self._metadata.start()

    def stop(self) -> None:
        """Stop the receiver, the spine and the metadata preparer."""
        self._stop.set()
        if self._metadata:
            self._metadata.stop()
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
    _mount_dicomweb(app, service)
    install_error_handlers(app)
    return app


def _mount_dicomweb(app: FastAPI, service: Service) -> None:
    """Mount DICOMweb (access) and STOW-RS (a source) under ``/dicomweb``."""
    options = service.settings.dicomweb
    if not options.enabled:
        return
    intake = service.intake
    app.include_router(create_dicomweb(intake.db, intake.blobs, options), prefix="/dicomweb")
    stow = StowSettings(
        options.stow_max_bytes,
        options.stow_memory_bytes,
        service.settings.default_project,
        options.public_url,
    )
    app.include_router(create_stow(intake, stow), prefix="/dicomweb")
