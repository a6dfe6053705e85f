"""Shared helpers of the source tests: small real DICOM files, one inline jobs facade."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicomgate.archive.models import Instance
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.sources import folder_job as _folder_job  # noqa: F401  (registers its kind)
from dicomgate.sources import handlers as _handlers  # noqa: F401  (registers media, upload)
from tests.conftest import PYDICOM_FILES


def inline_jobs(intake: Intake, lease: float = 5.0) -> Jobs:
    """Return a jobs facade that runs jobs in the calling thread, retrying without delay."""
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=3, lease_seconds=lease)
    return Jobs(intake, config)


def write_study(folder: Path, count: int, patient_id: str = "P0001") -> list[str]:
    """Write ``count`` instances of one new study (from CT_small.dcm); return their UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID = patient_id
    uids = []
    for index in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = index + 1
        ds.save_as(folder / f"IM{index:05d}", enforce_file_format=True)
        uids.append(str(ds.SOPInstanceUID))
    return uids


def instance_count(intake: Intake) -> int:
    """Return how many instances the index holds."""
    with intake.db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def stored_uids(intake: Intake) -> set[str]:
    """Return the SOP Instance UIDs the index holds."""
    with intake.db.reader() as session:
        return set(session.scalars(select(Instance.sop_instance_uid)))
