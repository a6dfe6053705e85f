"""The Huey queue adapter: SqliteHuey embedded by default, RedisHuey or PostgresHuey by config.

The queue only carries job ids ("run job X now / in N seconds"); all job state lives in the
job tables, so a lost or duplicated task costs nothing: the engine claims a job before running
it and the recovery pass schedules what a dead worker left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer, Worker

from dicomgate.errors import ConfigError
from dicomgate.jobs.config import JobsConfig, QueueBackend

log = logging.getLogger(__name__)

TASK_NAME = "dicomgate.jobs.run"


def _libpq_url(url: str) -> str:
    """Return a SQLAlchemy PostgreSQL URL in the form psycopg connects with."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def make_huey(config: JobsConfig, data_dir: Path, database_url: str) -> Huey:
    """Return the Huey instance the configuration selects.

    Parameters
    ----------
    config
        The ``jobs`` settings.
    data_dir
        The data folder (holds ``queue.sqlite3`` for the embedded queue).
    database_url
        The index URL; the PostgreSQL queue uses it when ``jobs.postgres_url`` is unset.
    """
    name = config.queue_name
    if config.queue is QueueBackend.SQLITE:
        return SqliteHuey(name, filename=str(data_dir / "queue.sqlite3"), results=False, fsync=True)
    if config.queue is QueueBackend.REDIS:
        return RedisHuey(name, url=config.redis_url, results=False)
    url = config.postgres_url or database_url
    if not url.startswith("postgresql"):
        raise ConfigError("jobs.postgres_url: the postgres queue needs a PostgreSQL URL")
    # Polled like SQLite (blocking=False): LISTEN connections would be one per worker thread,
    # left open until garbage collection.
    return PostgresHuey(name, dsn=_libpq_url(url), results=False, blocking=False)


class Wakeup:
    """Wakes the idle workers of this process when a run is enqueued here.

    Huey's workers poll the queue, sleeping longer after each empty look (up to the
    consumer's ``max_delay``): a job submitted to an idle service waited up to that long
    before it started. A generation count makes a poke between a worker's empty look and its
    sleep wake it all the same. Runs enqueued by another process are found by the polling.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    def poke(self) -> None:
        """Wake every worker that is sleeping, or about to, after an empty look."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def generation(self) -> int:
        """Return the count of pokes so far (taken before a look at the queue)."""
        with self._changed:
            return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds unless a poke came after generation ``seen``."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout)


class _WakeableWorker(Worker):  # type: ignore[misc]
    """A Huey worker whose sleeps between empty looks end at a :class:`Wakeup` poke."""

    wakeup: Wakeup
    delay: float
    max_delay: float
    backoff: float

    def loop(self, now: Any = None) -> None:
        self._seen = self.wakeup.generation()
        super().loop(now)

    def sleep(self) -> None:
        self.delay = min(self.delay, self.max_delay)
        self.wakeup.wait(self._seen, self.delay)
        self.delay *= self.backoff


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that runs inside the service: the host process owns the signals."""

    worker_class = _WakeableWorker

    def __init__(self, *args: Any, wakeup: Wakeup, **kwargs: Any) -> None:
        self.wakeup = wakeup
        super().__init__(*args, **kwargs)

    def _create_worker(self) -> _WakeableWorker:
        worker: _WakeableWorker = super()._create_worker()
        worker.wakeup = self.wakeup
        return worker

    def stop(self, graceful: bool = False) -> None:
        """Set the stop flag, wake the idle workers so they see it now, then stop as Huey does."""
        self.stop_flag.set()
        self.wakeup.poke()
        super().stop(graceful)

    def _set_signal_handlers(self) -> None:
        pass


class Queue:
    """Enqueue job runs and, when asked, consume them with worker threads in this process.

    Parameters
    ----------
    huey
        The Huey instance (see ``make_huey``).
    poll_delays
        The first and the longest sleep of an idle worker between looks at the queue (s);
        runs enqueued in this process wake it at once.
    """

    def __init__(self, huey: Huey, poll_delays: tuple[float, float] = (0.05, 0.5)) -> None:
        self.huey = huey
        self.poll_delays = poll_delays
        self._task: Any = None
        self._consumer: Consumer | None = None
        self._wakeup = Wakeup()

    def bind(self, run: Callable[[str], None]) -> None:
        """Register ``run(job_id)`` as the one task this queue carries."""
        self._task = self.huey.task(name=TASK_NAME)(run)

    def enqueue(self, job_id: str, delay: float | None = None) -> None:
        """Have ``job_id`` run as soon as a worker is free, or after ``delay`` seconds."""
        if self._task is None:
            raise RuntimeError("Queue.bind() must be called before enqueue()")
        if delay:
            self._task.schedule(args=(job_id,), delay=delay)
        else:
            self._task(job_id)
            self._wakeup.poke()

    def start(self, workers: int) -> None:
        """Start ``workers`` consumer threads and the scheduler (for delayed runs)."""
        if workers <= 0 or self._consumer is not None:
            return
        self._consumer = _EmbeddedConsumer(
            self.huey,
            workers=workers,
            worker_type="thread",
            periodic=False,
            initial_delay=self.poll_delays[0],
            backoff=1.5,
            max_delay=self.poll_delays[1],
            check_worker_health=False,
            wakeup=self._wakeup,
        )
        self._consumer.start()
        log.info("job queue: %d worker threads", workers)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the consumer, letting running jobs finish for up to ``timeout`` seconds."""
        if self._consumer is None:
            return
        self._consumer.shutdown_timeout = timeout
        self._consumer.stop(graceful=True)
        self._consumer = None
        self.huey.storage.close()

    def pending_count(self) -> int:
        """Return the number of runs waiting in the queue (not counting delayed ones)."""
        return int(self.huey.pending_count())
