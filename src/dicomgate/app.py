"""Composition root: Settings -> database, stores, intake, receiver, spine, HTTP app."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from dicomgate import __version__
from dicomgate.access.api import create_api, install_error_handlers
from dicomgate.access.deid_api import create_deid_api
from dicomgate.access.dicomweb.context import Context
from dicomgate.access.dicomweb.metadata import MetadataFollower
from dicomgate.access.dicomweb.router import create_dicomweb
from dicomgate.access.dicomweb.search_lane import SearchLane
from dicomgate.access.dicomweb.stow_lane import StowLane
from dicomgate.access.dimse.retrieve import Archive
from dicomgate.access.dimse.service import query_retrieve_extension
from dicomgate.access.pacs_api import create_pacs_api
from dicomgate.access.pacs_jobs_api import create_pacs_jobs_api
from dicomgate.access.projects_api import create_projects_api
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.projects import ensure_quarantine, sync_project
from dicomgate.archive.reconcile import ReconcileReport, reconcile
from dicomgate.auth.audit import AuditEvent, AuditTrail
from dicomgate.auth.dicom_guard import AssociationGuard
from dicomgate.auth.guard import Gate
from dicomgate.auth.http import Authenticator, async_caller_dependency, caller_dependency
from dicomgate.auth.routes import create_auth_router
from dicomgate.auth.users import ensure_admin
from dicomgate.db import Database
from dicomgate.deid.config import open_vault
from dicomgate.deid.errors import DeidError
from dicomgate.errors import ConfigError
from dicomgate.httputil import document_mounted
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.api import create_jobs_router
from dicomgate.jobs.queue import Queue, make_huey
from dicomgate.pipeline import advance
from dicomgate.prearchive.api import create_prearchive_api
from dicomgate.prearchive.context import Review, build_review
from dicomgate.prearchive.store import recover_archiving
from dicomgate.settings import Settings
from dicomgate.sources import import_processes
from dicomgate.sources.inbox_api import create_inbox_router
from dicomgate.sources.media_api import create_media_router
from dicomgate.sources.pacs import csv_import as _csv_import  # noqa: F401  (registers its kind)
from dicomgate.sources.pacs import jobs as pacs_jobs
from dicomgate.sources.pacs.service import PacsService
from dicomgate.sources.scp import Extension, Receiver
from dicomgate.sources.stow import Stow, StowSettings, create_stow
from dicomgate.sources.upload_api import create_upload_router
from dicomgate.sources.watch import start_watcher

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


def open_auth(settings: Settings, intake: Intake) -> Authenticator:
    """Open the audit trail (its own database) and the authenticator over the index."""
    url = settings.auth.audit_database_url
    if url is None:
        url = f"sqlite:///{(settings.data_dir / 'audit.sqlite3').resolve()}"
    trail = AuditTrail(url, reads_wait_for_disk=settings.auth.audit_reads_wait_for_disk)
    return Authenticator(settings.auth, intake.db, trail)


def _first_admin(settings: Settings, auth: Authenticator) -> None:
    if not settings.auth.enabled:
        return
    with auth.db.unit_of_work() as session:
        generated = ensure_admin(session, settings.auth.admin_password)
    if generated:
        # Printed once to the console, never logged: it is a credential.
        print(f"dicomgate: created user 'admin' with password {generated}", flush=True)


def open_jobs(settings: Settings, intake: Intake, queue: bool = True) -> Jobs:
    """Return the jobs facade: on the configured Huey queue, or inline (``queue=False``)."""
    from dicomgate.archive.share import bind_share
    from dicomgate.sources import (  # noqa: F401  (register source job kinds)
        files,
        folder_job,
        handlers,
        import_processes,
    )

    bind_share(build_review(settings, intake))  # the share_session job kind, for this site
    sources = settings.sources
    import_processes.configure(sources.import_processes, sources.import_processes_from)

    if not queue:
        return Jobs(intake, settings.jobs)
    huey = make_huey(settings.jobs, settings.data_dir, settings.effective_database_url)
    return Jobs(intake, settings.jobs, Queue(huey))


def receiver_extensions(
    settings: Settings, intake: Intake, guard: AssociationGuard
) -> list[Extension]:
    """Return the services the receiver's AE answers besides C-ECHO and C-STORE.

    Module level so that receiver worker processes can rebuild them over their own intake
    and guard.
    """
    qr = settings.query_retrieve
    if not qr.enabled:
        return []
    archive = Archive(intake.db, intake.blobs)
    return [query_retrieve_extension(archive, qr, settings.ae_title, guard)]


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
    auth: Authenticator = field(default=None)  # type: ignore[assignment]  # set in __post_init__
    receiver: Receiver | None = None
    reconciled: ReconcileReport | None = None
    jobs: Jobs = field(init=False)
    review: Review | None = None
    pacs: PacsService = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _spine: threading.Thread | None = None
    _watcher: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = open_auth(self.settings, self.intake)
        self.jobs = open_jobs(self.settings, self.intake)
        self.pacs = PacsService(self.settings, self.intake)
        pacs_jobs.bind(self.pacs)  # the pacs_retrieve / pacs_csv_import handlers use it

    _metadata: MetadataFollower | None = None

    def start(self) -> None:
        """Reconcile, then start the DICOM receiver, the spine thread and the job workers."""
        check_vault(self.settings)
        self.reconciled = reconcile(self.intake.db, self.intake.blobs, self.intake.set_aside)
        _first_admin(self.settings, self.auth)
        self.auth.audit.record(AuditEvent.APPLICATION_ACTIVITY, "start", actor="dicomgate")
        self.review = self.review or build_review(self.settings, self.intake)
        with self.intake.db.unit_of_work() as session:
            recover_archiving(session)
        self.receiver = Receiver(self.settings, self.intake, receiver_extensions, self.auth.audit)
        self._spine = threading.Thread(target=self._run_spine, name="spine", daemon=True)
        self._spine.start()
        self.jobs.start()
        self._watcher = start_watcher(self.settings.sources, self.jobs, self._stop)
        self._start_metadata()
        # The modules, engines and settings live as long as the service: out of every
        # collection from now on (as in ``dicomgate import``, where the collector walking
        # them again cost a fifth of an in-process import's parse).
        gc.freeze()
        log.info(
            "DICOM receiver %s listening on port %s", self.settings.ae_title, self.receiver.port
        )
        if self.receiver.tls_port is not None:
            log.info("DICOM TLS listener on port %s", self.receiver.tls_port)

    def _run_spine(self) -> None:
        assert self.review is not None
        while not self._stop.wait(self.settings.stability_check_interval):
            try:
                advance(self.review)
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
        """Stop the workers, the receiver, the spine, the watcher and the other processes."""
        self._stop.set()
        self.jobs.stop()
        if self._metadata:
            self._metadata.stop()
        if self.receiver:
            self.receiver.stop()
        if self._spine:
            self._spine.join(timeout=10)
        self.auth.audit.record(AuditEvent.APPLICATION_ACTIVITY, "stop", actor="dicomgate")
        if self._watcher:
            self._watcher.join(timeout=10)
        # Its processes would outlive nothing (they watch this one) but leave their queue's
        # semaphores behind for the resource tracker to warn about.
        import_processes.shutdown()
        self.auth.audit.dispose()


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
    # Every router authenticates first (401 before any body is read); each action then
    # checks the caller's project role in the service it calls, through the gate.
    guarded = [Depends(current)]
    _mount_dicomweb(app, service)  # first: see its docstring
    intake = service.intake
    app.include_router(create_api(intake.db, intake.blobs, current, service.auth.audit))
    app.include_router(create_auth_router(service.auth, current))
    gate = Gate(current, service.auth.audit)
    _mount_rest(app, service, gate, guarded)
    install_error_handlers(app)
    return app


def _mount_rest(app: FastAPI, service: Service, gate: Gate, guarded: list[Any]) -> None:
    """Mount the REST routers of jobs, imports, projects, review, PACS and de-identification."""
    jobs, db = service.jobs, service.intake.db
    inbox = create_inbox_router(jobs, db, service.settings.jobs.inbox_root, gate)
    service.review = service.review or build_review(service.settings, service.intake)
    sources = service.settings.sources
    spool = sources.upload_dir or service.settings.data_dir / "uploads"
    routers = [
        create_jobs_router(jobs, gate),
        inbox,
        create_projects_api(db, gate),
        create_prearchive_api(service.review, gate),
        create_pacs_api(service.pacs, gate),
        create_pacs_jobs_api(service.pacs, jobs, gate),
        create_upload_router(jobs, db, sources, spool, gate),
        create_media_router(jobs, db, sources, gate),
        create_deid_api(service.review, jobs, gate),
    ]
    for router in routers:
        app.include_router(router, dependencies=guarded)


def _mount_dicomweb(app: FastAPI, service: Service) -> None:
    """Mount DICOMweb (access) and STOW-RS (a source) under ``/dicomweb``, as the first route.

    A viewer sends many small searches, and the application matches a path against its routes
    one by one: included among the REST routers, a DICOMweb path was tried against all of
    them first (about a millisecond per request). Mounted first, one prefix test sends it to
    the DICOMweb routes alone. The mount is a router, not a sub-application, so the
    application's exception handlers (problem documents) still answer its errors; its routes
    are added to the application's OpenAPI document by ``document_mounted``. It authenticates
    like the other routers, with the coroutine form of the caller dependency.
    """
    options = service.settings.dicomweb
    if not options.enabled:
        return
    intake = service.intake
    audit = service.auth.audit
    stow = StowSettings(
        options.stow_max_bytes,
        options.stow_memory_bytes,
        service.settings.default_project,
        options.public_url,
    )
    caller = async_caller_dependency(service.auth)
    dicomweb = APIRouter(dependencies=[Depends(caller)])
    dicomweb.include_router(create_dicomweb(intake.db, intake.blobs, options, audit))
    source = Stow(intake, stow, audit)
    dicomweb.include_router(create_stow(source))
    app.mount("/dicomweb", dicomweb)
    document_mounted(app, "/dicomweb", dicomweb)
    context = Context(intake.db, intake.blobs, options, audit)
    app.add_middleware(SearchLane, ctx=context, caller=caller, prefix="/dicomweb")
    app.add_middleware(StowLane, stow=source, caller=caller, prefix="/dicomweb")
