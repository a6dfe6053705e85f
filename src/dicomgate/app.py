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
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.reconcile import ReconcileReport, reconcile
from dicomgate.auth.audit import AuditEvent, AuditTrail
from dicomgate.auth.http import Authenticator, caller_dependency
from dicomgate.auth.routes import create_auth_router
from dicomgate.auth.users import ensure_admin
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.pipeline import advance
from dicomgate.settings import Settings
from dicomgate.sources.scp import Receiver

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


def open_auth(settings: Settings, intake: Intake) -> Authenticator:
    """Open the audit trail (its own database) and the authenticator over the index."""
    url = settings.auth.audit_database_url
    if url is None:
        url = f"sqlite:///{(settings.data_dir / 'audit.sqlite3').resolve()}"
    return Authenticator(settings.auth, intake.db, AuditTrail(url))


def _first_admin(settings: Settings, auth: Authenticator) -> None:
    if not settings.auth.enabled:
        return
    with auth.db.unit_of_work() as session:
        generated = ensure_admin(session, settings.auth.admin_password)
    if generated:
        # Printed once to the console, never logged: it is a credential.
        print(f"dicomgate: created user 'admin' with password {generated}", flush=True)


@dataclass
class Service:
    """Everything ``dicomgate serve`` runs, started and stopped together."""

    settings: Settings
    intake: Intake
    auth: Authenticator
    receiver: Receiver | None = None
    reconciled: ReconcileReport | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _spine: threading.Thread | None = None

    def start(self) -> None:
        """Reconcile, then start the DICOM receiver and the spine thread."""
        self.reconciled = reconcile(self.intake.db, self.intake.blobs, self.intake.set_aside)
        _first_admin(self.settings, self.auth)
        self.auth.audit.record(AuditEvent.APPLICATION_ACTIVITY, "start", actor="dicomgate")
        self.receiver = Receiver(self.settings, self.intake, self.auth.audit)
        self._spine = threading.Thread(target=self._run_spine, name="spine", daemon=True)
        self._spine.start()
        log.info(
            "DICOM receiver %s listening on port %s", self.settings.ae_title, self.receiver.port
        )
        if self.receiver.tls_port is not None:
            log.info("DICOM TLS listener on port %s", self.receiver.tls_port)

    def _run_spine(self) -> None:
        while not self._stop.wait(self.settings.stability_check_interval):
            try:
                advance(self.intake.db, self.settings.stable_after, self.settings.default_project)
            except Exception:
                log.exception("spine pass failed; retrying at the next interval")

    def stop(self) -> None:
        """Stop the receiver and the spine."""
        self._stop.set()
        if self.receiver:
            self.receiver.stop()
        if self._spine:
            self._spine.join(timeout=10)
        self.auth.audit.record(AuditEvent.APPLICATION_ACTIVITY, "stop", actor="dicomgate")


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
    current = caller_dependency(service.auth)
    intake = service.intake
    app.include_router(create_api(intake.db, intake.blobs, current, service.auth.audit))
    app.include_router(create_auth_router(service.auth, current))
    install_error_handlers(app)
    return app
