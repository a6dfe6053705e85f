"""Receiver worker processes: more than one core's worth of Python on one DICOM port.

The receiving process opens the listening socket; each worker is a spawned process that
inherits it and serves associations from it with its own ``Receiver`` and its own ``Intake``
(engine, blob stores, group commit) over the same data folder and index. Every process
accepts from the one socket, so an idle process takes the next association. A worker dies
with the process that started it (``PR_SET_PDEATHSIG`` on Linux, and a check of the parent
once a second), so a killed server never leaves a listener behind.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.auth.audit import AuditTrail
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.settings import DuplicatePolicy, Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class _IntakeSpec:
    """What a worker needs to open the same intake stores (picklable)."""

    database_url: str
    blobs: Path
    set_aside: Path
    duplicate_policy: DuplicatePolicy
    audit_url: str | None = None


def start_workers(
    listener: socket.socket,
    counts: Any,
    settings: Settings,
    intake: Intake,
    extensions: Callable[..., Sequence[Any]] | None = None,
    audit_url: str | None = None,
) -> list[BaseProcess]:
    """Start a worker for each slot of ``counts`` but the first (ours); return once all serve.

    ``counts`` is the shared array of associations in progress per process; ``audit_url``
    the audit store each worker opens to record its own DICOM events (``None``: none).
    """
    spec = _IntakeSpec(
        intake.db.url,
        intake.blobs.root,
        intake.set_aside.root,
        intake.duplicate_policy,
        audit_url,
    )
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    readiness = []
    for slot in range(1, len(counts)):
        ready = context.Event()
        worker: BaseProcess = context.Process(
            target=_worker_main,
            args=(settings, spec, listener, (counts, slot), os.getpid(), ready, extensions),
            name=f"dicomgate-receiver-{slot}",
            daemon=True,
        )
        worker.start()
        workers.append(worker)
        readiness.append(ready)
    for worker, ready in zip(workers, readiness, strict=True):
        # Serving only once every worker serves: a worker still importing would compete with
        # the first associations for the CPU.
        while not ready.wait(0.2):
            if not worker.is_alive():
                stop_workers(workers)
                raise RuntimeError(f"receiver worker {worker.name} exited at start")
    return workers


def stop_workers(workers: list[BaseProcess], timeout: float = 10.0) -> None:
    """Ask each worker to finish (SIGTERM), then kill the ones still running, by process id."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _die_with_parent(parent: int) -> threading.Event:
    with_parent = threading.Event()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watch below still ends the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while not with_parent.wait(1.0):
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return with_parent


def _worker_main(
    settings: Settings,
    spec: _IntakeSpec,
    listener: socket.socket,
    load: tuple[Any, int],
    parent: int,
    ready: Any,
    extensions: Callable[..., Sequence[Any]] | None,
) -> None:
    _die_with_parent(parent)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from dicomgate.sources.scp import Load, Receiver  # here: scp imports this module

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stop.set())
    db = Database(spec.database_url)
    blobs, set_aside = FilesystemBlobStore(spec.blobs), FilesystemBlobStore(spec.set_aside)
    intake = Intake(db, blobs, set_aside, spec.duplicate_policy)
    # Its own connection to the audit store: records of its associations are its to write.
    audit = AuditTrail(spec.audit_url, create=False) if spec.audit_url else None
    receiver = Receiver(
        settings, intake, extensions or (), audit, listener=listener, load=Load(*load)
    )
    log.debug("receiver worker %s serving", os.getpid())
    ready.set()
    while not stop.wait(1.0):
        pass
    receiver.stop()
    db.dispose()
    if audit is not None:
        audit.dispose()
