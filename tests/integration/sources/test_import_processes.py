"""Large imports read, parsed and stored by the import processes: same outcomes, nothing lost."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake
from dicomgate.intake.spec import IntakeSpec
from dicomgate.jobs import JobContext, JobStatus
from dicomgate.settings import DuplicatePolicy
from dicomgate.sources import import_processes
from dicomgate.sources.batch_settle import Planned, ReceivedItem
from dicomgate.sources.files import load_entry  # and registers import_files
from tests.integration.sources.helpers import inline_jobs, instance_count, stored_uids, write_study


def _pool_pids() -> set[int]:
    """Return the process ids of this process's spawned or forked children (the pool workers)."""
    me, pids = str(os.getpid()), set()
    mine = Path("/proc/self/cmdline").read_bytes()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and (b"spawn_main" in cmdline or cmdline == mine):
            pids.add(int(stat.parent.name))
    return pids


def test_a_large_import_is_stored_by_the_import_processes(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    folder = tmp_path / "drop"
    uids = write_study(folder, 40)
    (folder / "notes.txt").write_text("not DICOM\n")
    whole = (folder / "IM00000").read_bytes()
    (folder / "cut").write_bytes(whole[:-100])
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit("import_files", {"paths": [str(folder)]}))
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 40, "rejected": 2}
    reasons = {Path(i.key).name: i.reason for i in jobs.items(job.id).items}
    assert reasons["notes.txt"].startswith("malformed:") and "incomplete" in reasons["cut"]
    assert stored_uids(intake) == set(uids) and instance_count(intake) == 40
    # The series was written by the pool's processes, so this process never learnt its row.
    assert intake.known.series == {} and len(_pool_pids()) == 2
    again = jobs.run_inline(jobs.submit("import_files", {"paths": [str(folder / "IM00001")]}))
    assert again.counts == {"already_stored": 1}


def test_a_small_import_stays_on_the_jobs_thread(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    write_study(tmp_path / "drop", 9)
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]}))
    assert job.counts == {"stored": 9}
    assert len(intake.known.series) == 1 and _pool_pids() == set()


def test_a_killed_import_process_leaves_its_items_pending_for_the_retry(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    uids = write_study(tmp_path / "drop", 500)
    jobs = inline_jobs(intake)
    job_id = jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]})
    killed: list[int] = []

    def kill_the_pool_once_started() -> None:
        deadline = time.monotonic() + 60
        while jobs.get(job_id, counts=False).done < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        for pid in _pool_pids():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    killer = threading.Thread(target=kill_the_pool_once_started)
    killer.start()
    job = jobs.run_inline(job_id)
    killer.join()
    assert killed
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert job.counts == {"stored": 500}  # those stored before the kill are recorded stored
    assert stored_uids(intake) == set(uids) and instance_count(intake) == 500
    log = [line.message for line in jobs.log_lines(job_id)]
    assert any("an import process died" in line for line in log), log
    assert len([line for line in log if line.startswith("run started")]) == 2


def test_a_cancelled_import_records_every_batch_a_process_took(
    intake: Intake, tmp_path: Path, two_processes: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobContext, "cancel_poll_seconds", 0.0)
    write_study(tmp_path / "drop", 600)
    jobs = inline_jobs(intake)
    job_id = jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]})

    def cancel_once_started() -> None:
        deadline = time.monotonic() + 60
        while jobs.get(job_id, counts=False).done < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        jobs.cancel(job_id)

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    job = jobs.run_inline(job_id)
    canceller.join()
    assert job.status is JobStatus.CANCELLED
    stored = job.counts.get("stored", 0)
    assert 8 <= stored < 600 and job.counts.get("pending") == 600 - stored
    # Whatever a process stored was recorded: nothing is in the index but unrecorded.
    assert instance_count(intake) == stored


def test_the_pool_outlives_the_thread_that_spawned_its_processes(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    # The pool spawns a process on the thread of the call that needs one, which may end.
    spawner = threading.Thread(target=import_processes.start, kwargs={"wait": True})
    spawner.start()
    spawner.join()
    time.sleep(0.5)  # a death signal tied to the thread would have arrived by now
    pids = _pool_pids()
    assert len(pids) == 2
    [uid] = write_study(tmp_path / "one", 1)
    path = tmp_path / "one" / "IM00000"
    item = Planned(str(path), path)  # import_files' items are keyed by their path
    pairs = [(item, Origin(OriginKind.IMPORT, job_id="j1"))]
    pool, spec = import_processes.start(), IntakeSpec.of(intake)
    [answer] = import_processes.submit(pool, spec, load_entry, pairs).result()
    assert isinstance(answer, ReceivedItem) and answer.result.sop_instance_uid == uid
    assert _pool_pids() == pids


def test_a_running_pool_takes_smaller_imports(
    intake: Intake, tmp_path: Path, two_processes: None
) -> None:
    import_processes.configure(2, 1000)
    assert import_processes.pool_for(import_processes.WARM_FROM) is None  # not started for it
    import_processes.start(wait=True)
    uids = write_study(tmp_path / "drop", import_processes.WARM_FROM)
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]}))
    assert job.counts == {"stored": len(uids)} and stored_uids(intake) == set(uids)
    assert intake.known.series == {}  # stored by the running pool's processes


def test_a_new_process_count_replaces_the_pool(two_processes: None) -> None:
    first = import_processes.start(wait=True)
    assert import_processes.pool_for(10) is first and import_processes.pool_for(9) is None
    import_processes.configure(1, 10)
    assert import_processes.pool_for(10_000) is None  # one process: the job's own
    assert _pool_pids() == set()


def test_prestart_brings_the_processes_up_in_the_background(two_processes: None) -> None:
    import_processes.prestart()
    deadline = time.monotonic() + 60
    while len(_pool_pids()) < 2:
        assert time.monotonic() < deadline, "the import processes did not start"
        time.sleep(0.05)
    import_processes.configure(1, 10)
    import_processes.prestart()  # one process: the job's own, nothing to start
    assert _pool_pids() == set()


def test_processes_are_forked_only_when_asked_from_a_single_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(import_processes.sys, "platform", "linux")
    monkeypatch.setattr(import_processes.threading, "active_count", lambda: 1)
    assert import_processes._context(fork=True).get_start_method() == "fork"
    assert import_processes._context(fork=False).get_start_method() == "spawn"
    monkeypatch.setattr(import_processes.threading, "active_count", lambda: 2)
    assert import_processes._context(fork=True).get_start_method() == "spawn"  # a service
    monkeypatch.setattr(import_processes.threading, "active_count", lambda: 1)
    monkeypatch.setattr(import_processes.sys, "platform", "darwin")
    assert import_processes._context(fork=True).get_start_method() == "spawn"


def test_an_in_memory_index_is_not_shared_with_other_processes(tmp_path: Path) -> None:
    def spec(url: str) -> IntakeSpec:
        return IntakeSpec(url, tmp_path / "b", tmp_path / "s", DuplicatePolicy.KEEP_FIRST)

    assert not spec("sqlite://").shareable and not spec("sqlite:///:memory:").shareable
    assert spec(f"sqlite:///{tmp_path / 'index.sqlite3'}").shareable
    assert spec("postgresql+psycopg://u@localhost/db").shareable


def test_the_import_command_warms_the_processes_for_a_large_import_only(
    tmp_path: Path, two_processes: None
) -> None:
    from dicomgate.cli import warm_import_processes
    from dicomgate.settings import Settings

    settings = Settings(
        data_dir=tmp_path / "data",
        sources={"import_processes": 2, "import_processes_from": 30},  # type: ignore[arg-type]
    )
    write_study(tmp_path / "small", 29)
    warm_import_processes(settings, [tmp_path / "small"])
    assert import_processes.pool_for(import_processes.WARM_FROM) is None  # nothing started
    write_study(tmp_path / "large", 30)
    warm_import_processes(settings, [tmp_path / "large"])
    assert import_processes.pool_for(import_processes.WARM_FROM) is not None
    deadline = time.monotonic() + 60
    while len(_pool_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # started in the background, while the command goes on
    assert len(_pool_pids()) == 2
