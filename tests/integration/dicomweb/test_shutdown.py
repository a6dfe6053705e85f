"""A stopped service leaves no descriptor open in its process (it may run in a larger one)."""

from __future__ import annotations

import gc
import time
from pathlib import Path

from dicomgate.db import Database
from tests.conftest import open_descriptors
from tests.integration.dicomweb.conftest import _serve, ct_copy


def _run_once(tmp: Path, url: str) -> None:
    serving = _serve(tmp, url)
    gate = next(serving)
    gate.store(ct_copy())
    assert gate.http.get("/studies").status_code == 200
    serving.close()  # runs the fixture's teardown: the service stops


def test_a_restarted_service_leaves_nothing_open(database: Database, tmp_path: Path) -> None:
    # The first run opens what lives as long as the process (e.g. multiprocessing's tracker).
    _run_once(tmp_path, database.url)
    gc.collect()
    before = open_descriptors()
    _run_once(tmp_path, database.url)
    gc.collect()
    assert _left_open(before) == {}


def _left_open(before: dict[int, str]) -> dict[int, str]:
    """Return the descriptors opened since ``before`` that are still open a moment later.

    Another test's thread winding down in this worker may hold one for an instant.
    """
    new = {fd: target for fd, target in open_descriptors().items() if fd not in before}
    if new:
        time.sleep(0.5)
        now = open_descriptors()
        new = {fd: target for fd, target in new.items() if now.get(fd) == target}
    return new
