"""Import processes: the batches of a large import read, parsed and stored on every core.

One Python process parses, hashes and stores about one core's worth of instances: on a
folder import that was a quarter of the rate pydicom reads the same headers. A job with at
least ``from_items`` files pending hands its batches to a pool of spawned processes; each
reads, prepares and receives a whole batch with its own intake (engine, blob stores, group
commit) over the same data folder and index, and answers with small per-item results. The
job's thread records those answers and moves files, in batch order (``sources.batches``).

The pool is started at the first large import (or by :func:`start`, or in the background by
:func:`prestart` when a watched folder sees a folder dropped) and kept for the next ones;
each process opens the intake of a data folder once. A worker ends with the process that
started it. When a worker dies, the batches it had are unknown: their items stay pending
(what was stored is found stored on the retry) and the next import starts a new pool.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from dicomgate.child_process import die_with_parent
from dicomgate.errors import StorageError
from dicomgate.intake.origin import Origin
from dicomgate.intake.receive import Intake
from dicomgate.intake.spec import IntakeSpec
from dicomgate.sources.batch_settle import Load, Planned, Settled, load_and_settle

_lock = threading.Lock()
_config = {"processes": 0, "from_items": 1000}
_pools: list[ProcessPoolExecutor] = []
_intakes: dict[IntakeSpec, Intake] = {}  # in a worker: the intake of each data folder
_INTAKES_KEPT = 4
WARM_FROM = 24  # a running pool takes imports of more than the first batch or two


def configure(processes: int, from_items: int) -> None:
    """Set how many import processes to run (0: one per core, 1: none) and from what size.

    A pool already running with another size is shut down; the next large import starts one.
    """
    with _lock:
        if processes != _config["processes"]:
            _shutdown_locked()
        _config.update(processes=processes, from_items=from_items)


def process_count() -> int:
    """Return the configured number of import processes (one per core when set to 0)."""
    return _config["processes"] or os.cpu_count() or 1


def pool_for(items: int) -> ProcessPoolExecutor | None:
    """Return the pool for an import of ``items`` pending files, or None to stay in-process.

    The pool is started for ``from_items`` files or more (starting it costs about a second
    of CPU); once running it takes any import of WARM_FROM files or more.
    """
    if process_count() < 2:
        return None
    if items >= _config["from_items"]:
        return start()
    with _lock:
        running = _pools[0] if _pools else None
    return running if items >= WARM_FROM else None


def start(wait: bool = False, fork: bool = False) -> ProcessPoolExecutor:
    """Start the pool (once per process) and return it; later calls return the same pool.

    With ``wait``, return only once every process has started and imported what it needs
    (what a service has after its first large import; benchmarks start the pool so). With
    ``fork``, the processes are forked where that is safe (see :func:`_context`).
    """
    with _lock:
        if not _pools:
            context = _context(fork)
            _pools.append(
                ProcessPoolExecutor(
                    process_count(),
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
            )
        pool = _pools[0]
    if wait:
        _wait_for_every_process(pool)
    return pool


def _context(fork: bool) -> multiprocessing.context.BaseContext:
    """Return how to start the processes: spawned, or forked when asked and safe.

    A spawned process starts a new interpreter and imports pydicom, SQLAlchemy and intake
    again: about 0.8 s, during which a ``dicomgate import`` job of 2,000 large files, 1.8 s
    in all, had its first batch waiting 0.5 s. A forked one has them already. Forking is
    safe only in a process that runs no other thread (a lock another thread held would stay
    held in the child) and has no database connection open yet, which is how the command
    line is when it starts its pool; on Linux only (elsewhere fork is unsafe or missing).
    A service (threads everywhere) spawns.
    """
    if fork and sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def prestart(fork: bool = False) -> None:
    """Start the pool's processes in the background, unless imports stay in-process.

    For a source that sees a large import coming before it starts: its processes import
    what they need (about 0.4 s of CPU each) while, for instance, a dropped folder is still
    being written. ``fork``: as for :func:`start`.
    """
    if process_count() < 2:
        return
    pool = start(fork=fork)
    for _ in range(process_count()):
        pool.submit(_pid_after, 0.0)  # each submit with no idle process spawns one


def _wait_for_every_process(pool: ProcessPoolExecutor, timeout: float = 120.0) -> None:
    """Run short tasks until each of the pool's processes has answered one."""
    count, seen = process_count(), set[int]()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {count} import processes started")
        seen.update(pool.map(_pid_after, [0.05] * count))


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)  # long enough for the other processes to take the other tasks
    return os.getpid()


def discard(pool: ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died, so that the next import starts a new one."""
    with _lock:
        if _pools and _pools[0] is pool:
            _pools.clear()
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the pool's processes (they finish the batch they have)."""
    with _lock:
        _shutdown_locked()


def _shutdown_locked() -> None:
    while _pools:
        _pools.pop().shutdown(wait=True, cancel_futures=True)


def submit(
    pool: ProcessPoolExecutor, spec: IntakeSpec, load: Load, batch: Sequence[tuple[Planned, Origin]]
) -> Future[list[Settled]]:
    """Have a worker read, prepare and receive ``batch``; its future holds each item's answer."""
    return pool.submit(_settle_in_worker, spec, load, list(batch))


def _init_worker(parent: int) -> None:
    # The pool spawns a process on the thread of the call that needs one (a job's, a
    # watcher's), which may end long before the pool: no death signal.
    die_with_parent(parent, started_by_lasting_thread=False)


def _settle_in_worker(
    spec: IntakeSpec, load: Load, batch: list[tuple[Planned, Origin]]
) -> list[Settled]:
    intake = _intakes.get(spec)
    if intake is None:
        while len(_intakes) >= _INTAKES_KEPT:  # another data folder each time: tests, benchmarks
            _intakes.pop(next(iter(_intakes))).db.dispose()
        intake = _intakes[spec] = spec.open()
        # The modules, the loader's among them, and the engine last as long as the process;
        # left in the collected generations, every full collection walked them again (about
        # a fifth of the time a worker spent reading and parsing files).
        gc.freeze()
    return [_portable(answer) for answer in load_and_settle(intake, load, batch)]


def _portable(answer: Settled) -> Settled:
    """Return an error the job's process can unpickle, keeping the storage errors' class."""
    if not isinstance(answer, Exception):
        return answer
    if isinstance(answer, StorageError):
        return type(answer)(str(answer))
    return RuntimeError(f"{type(answer).__name__}: {answer}")
