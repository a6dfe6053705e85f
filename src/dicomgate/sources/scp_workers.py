"""Receiver worker processes: more than one core's worth of Python on one DICOM port.

The receiving process opens the listening socket; each worker is a spawned process that
inherits it and serves associations from it with its own ``Receiver`` and its own ``Intake``
(engine, blob stores, group commit) over the same data folder and index. Every process
accepts from the one socket, so an idle process takes the next association. A worker dies
with the process that started it (``PR_SET_PDEATHSIG`` on Linux, and a check of the parent
once a second), so a killed server never leaves a listener behind.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from dicomgate.auth.audit import AuditTrail
from dicomgate.child_process import die_with_parent
from dicomgate.intake.receive import Intake
from dicomgate.intake.spec import IntakeSpec
from dicomgate.settings import Settings

log = logging.getLogger(__name__)


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
    spec = IntakeSpec.of(intake)
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    readiness = []
    for slot in range(1, len(counts)):
        ready = context.Event()
        worker: BaseProcess = context.Process(
            target=_worker_main,
            args=(
                settings,
                spec,
                audit_url,
                listener,
                (counts, slot),
                os.getpid(),
                ready,
                extensions,
            ),
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
    """Ask each worker to finish (SIGTERM), kill the ones still running (by pid), close them."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout)
        if worker.is_alive():
            worker.kill()
            worker.join()
        worker.close()  # its pipe to us, which only the garbage collector would close


def _worker_main(
    settings: Settings,
    spec: IntakeSpec,
    audit_url: str | None,
    listener: socket.socket,
    load: tuple[Any, int],
    parent: int,
    ready: Any,
    extensions: Callable[..., Sequence[Any]] | None,
) -> None:
    die_with_parent(parent)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from dicomgate.sources.scp import Load, Receiver  # here: scp imports this module

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_args: stop.set())
    intake = spec.open()
    # Its own connection to the audit store: records of its associations are its to write.
    waits = settings.auth.audit_reads_wait_for_disk
    audit = AuditTrail(audit_url, create=False, reads_wait_for_disk=waits) if audit_url else None
    receiver = Receiver(
        settings, intake, extensions or (), audit, listener=listener, load=Load(*load)
    )
    log.debug("receiver worker %s serving", os.getpid())
    # As ``Service.start`` does: what is loaded now lives as long as the worker, and every
    # full collection (one a minute, see ``scp``) walked it again, all threads stalled.
    gc.freeze()
    ready.set()
    while not stop.wait(1.0):
        pass
    receiver.stop()
    intake.db.dispose()
    if audit is not None:
        audit.dispose()
