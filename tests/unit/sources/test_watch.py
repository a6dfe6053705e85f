"""Watched folders: a drop is claimed once stable, exactly once, and claims survive a restart.

The clock is the test's own, so stability is decided without sleeping; the submit callable
just collects the parameters (the job engine itself is exercised in the integration tests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.conftest import PYDICOM_FILES

from dicomgate.sources.config import WatchFolder
from dicomgate.sources.watch import CLAIM_FILE, FolderWatcher, fingerprint


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watcher(tmp_path: Path, submitted: list[dict[str, Any]], clock: Clock) -> FolderWatcher:
    folder = WatchFolder(path=tmp_path / "in", project="P1")

    def submit(params: dict[str, Any]) -> str:
        submitted.append(params)
        return f"job{len(submitted)}"

    return FolderWatcher([folder], 5.0, submit, clock)


def test_a_drop_is_claimed_only_once_stable(tmp_path: Path) -> None:
    submitted: list[dict[str, Any]] = []
    clock = Clock()
    watcher = _watcher(tmp_path, submitted, clock)
    drop = tmp_path / "in" / "session1"
    drop.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", drop / "a.dcm")
    assert watcher.poll() == []
    clock.now += 4.0
    assert watcher.poll() == []
    with (drop / "b.dcm").open("wb") as fh:  # still being written: the wait starts again
        fh.write(b"partial")
    clock.now += 4.0
    assert watcher.poll() == []
    clock.now += 5.0
    assert watcher.poll() == ["job1"]
    assert not drop.exists()
    [params] = submitted
    claim = Path(params["claim"])
    assert params["project"] == "P1" and params["name"] == "session1"
    assert sorted(p.name for p in (claim / "session1").iterdir()) == ["a.dcm", "b.dcm"]
    assert json.loads((claim / CLAIM_FILE).read_text())["job_id"] == "job1"
    clock.now += 10
    assert watcher.poll() == []  # the claim has its job: nothing more to do


def test_loose_files_and_reserved_folders(tmp_path: Path) -> None:
    submitted: list[dict[str, Any]] = []
    clock = Clock()
    watcher = _watcher(tmp_path, submitted, clock)
    inbox = tmp_path / "in"
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", inbox / "loose.dcm")
    for reserved in ("done", "rejected"):
        (inbox / reserved).mkdir()
        (inbox / reserved / "old.dcm").write_bytes(b"x")
    (inbox / ".partial-copy").write_bytes(b"x")
    watcher.poll()
    clock.now += 6
    assert watcher.poll() == ["job1"]
    assert submitted[0]["name"] == "loose.dcm"
    assert Path(submitted[0]["root"]).is_file()
    assert (inbox / "done" / "old.dcm").exists() and (inbox / ".partial-copy").exists()


def test_a_claim_left_without_job_is_submitted_after_restart(tmp_path: Path) -> None:
    submitted: list[dict[str, Any]] = []
    clock = Clock()
    watcher = _watcher(tmp_path, submitted, clock)
    processing = tmp_path / "in" / "processing"
    # A crash after the drop was moved, before the job was submitted:
    orphan = processing / "20260101T000000-abc"
    (orphan / "session9").mkdir(parents=True)
    (orphan / CLAIM_FILE).write_text(json.dumps({"name": "session9", "job_id": None}))
    # A crash before the drop was moved: the claim is dropped, the drop is found again.
    early = processing / "20260101T000001-def"
    early.mkdir()
    (early / CLAIM_FILE).write_text(json.dumps({"name": "session8", "job_id": None}))
    (tmp_path / "in" / "session8").mkdir()
    restarted = FolderWatcher(watcher.folders, 5.0, watcher.submit, clock)
    assert restarted.poll() == ["job1"]
    assert submitted[0]["claim"] == str(orphan)
    assert not early.exists()
    clock.now += 6
    assert restarted.poll() == ["job2"]
    assert submitted[1]["name"] == "session8"


def test_fingerprint_sees_size_mtime_and_new_files_without_following_links(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "d"
    drop.mkdir()
    (drop / "a").write_bytes(b"1")
    (drop / "link").symlink_to(tmp_path)
    first = fingerprint(drop)
    (drop / "a").write_bytes(b"12")
    second = fingerprint(drop)
    (drop / "sub").mkdir()
    (drop / "sub" / "b").write_bytes(b"")
    third = fingerprint(drop)
    assert len({first, second, third}) == 3
    assert all(key != "link/d" for key, *_ in third)
    assert fingerprint(tmp_path / "missing") == ()
