"""The same import job through the Huey consumer on SqliteHuey, PostgresHuey and RedisHuey."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import upgrade
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.jobs import JobOut, Jobs, JobStatus
from dicomgate.jobs.config import JobsConfig, QueueBackend
from dicomgate.jobs.queue import Queue, Wakeup, make_huey
from tests.integration.jobs.conftest import copy_files
from tests.integration.jobs.handlers import calls

REDIS_URL = "redis://127.0.0.1:6379/0"


def wait_final(jobs: Jobs, job_id: str, deadline: float = 60.0) -> JobOut:
    """Poll until the job ends (a guard against hanging, not a timing assertion)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        job = jobs.get(job_id)
        if job.final:
            return job
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not end: {jobs.get(job_id)}")


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def queued(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Jobs]:
    backend = QueueBackend(request.param)
    name = f"test-{uuid.uuid4().hex[:12]}"
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    if backend is QueueBackend.POSTGRES:
        url = request.getfixturevalue("postgres_url")
    config = JobsConfig(
        queue=backend,
        queue_name=name,
        redis_url=REDIS_URL,
        workers=2,
        retry_base_delay=0.5,
        lease_seconds=30,
    )
    db = Database(url)
    upgrade(db)
    intake = Intake(db, FilesystemBlobStore(tmp_path / "b"), FilesystemBlobStore(tmp_path / "s"))
    jobs = Jobs(intake, config, Queue(make_huey(config, tmp_path, url)))
    jobs.start()
    yield jobs
    jobs.stop()
    if backend is QueueBackend.REDIS:
        jobs.queue.huey.storage.flush_all()  # type: ignore[union-attr]
    db.dispose()


def test_same_job_on_every_queue(queued: Jobs, tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm")
    job_id = queued.submit("import_files", {"paths": [str(tmp_path / "in")]})
    job = wait_final(queued, job_id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 2, "rejected": 1}


def test_retriable_error_is_rescheduled_through_the_queue(queued: Jobs) -> None:
    job_id = queued.submit("test_flaky", {"succeed_on": 2})
    job = wait_final(queued, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.attempts == 1
    assert calls[job_id] == 2


def test_redis_queue_is_really_redis(tmp_path: Path) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    config = JobsConfig(queue=QueueBackend.REDIS, queue_name=name, redis_url=REDIS_URL)
    huey = make_huey(config, tmp_path, "sqlite://")
    queue = Queue(huey)
    queue.bind(lambda _job_id: None)
    queue.enqueue("0" * 32)
    try:
        assert redis.Redis.from_url(REDIS_URL).llen(f"huey.redis.{name}".replace("-", "")) == 1
    finally:
        huey.storage.flush_all()


def test_a_poke_wakes_a_waiter_and_is_not_lost_before_the_wait() -> None:
    wakeup = Wakeup()
    seen = wakeup.generation()
    wakeup.poke()  # between the empty look and the sleep: the sleep must not happen
    done = threading.Event()
    threading.Thread(target=lambda: (wakeup.wait(seen, 3600), done.set()), daemon=True).start()
    assert done.wait(30)
    seen = wakeup.generation()
    done.clear()
    threading.Thread(target=lambda: (wakeup.wait(seen, 3600), done.set()), daemon=True).start()
    assert not done.wait(0.2)  # no poke yet: still asleep
    wakeup.poke()
    assert done.wait(30)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_idle_workers_start_a_job_enqueued_here_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Workers that sleep an hour between looks at an empty queue: only the wake-up can start
    # the job before the guard's deadline, and stop() must not wait for their sleep either.
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
    config = JobsConfig(queue=QueueBackend(backend), queue_name=f"test-{uuid.uuid4().hex[:12]}")
    db = Database(url)
    upgrade(db)
    intake = Intake(db, FilesystemBlobStore(tmp_path / "b"), FilesystemBlobStore(tmp_path / "s"))
    queue = Queue(make_huey(config, tmp_path, url), poll_delays=(3600, 3600))
    jobs = Jobs(intake, config, queue)
    jobs.start()
    try:
        time.sleep(0.3)  # the workers have looked at the empty queue and gone to sleep
        copy_files(tmp_path / "in", "CT_small.dcm")
        job = wait_final(jobs, jobs.submit("import_files", {"paths": [str(tmp_path / "in")]}))
        assert job.status is JobStatus.SUCCEEDED
    finally:
        stopping = threading.Thread(target=jobs.stop)
        stopping.start()
        stopping.join(30)
        assert not stopping.is_alive()
        db.dispose()
