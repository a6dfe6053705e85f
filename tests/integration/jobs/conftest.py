"""Fixtures for the job engine: an inline ``Jobs`` over the shared ``intake`` fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from tests.conftest import PYDICOM_FILES


@pytest.fixture()
def jobs(intake: Intake) -> Jobs:
    """Jobs run inline in the test's thread, retries without delay."""
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=3, lease_seconds=5)
    return Jobs(intake, config)


def copy_files(folder: Path, *names: str) -> list[Path]:
    """Copy pydicom test files into ``folder``; return the copies."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(PYDICOM_FILES / name, folder / Path(name).name)) for name in names]
