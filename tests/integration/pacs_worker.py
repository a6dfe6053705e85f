"""A job worker process for the crash test: runs one pacs_retrieve job with its own receiver.

Usage: python -m tests.integration.pacs_worker DB_URL DATA_DIR RECEIVER_PORT ORTHANC_PORT JOB_ID
"""

from __future__ import annotations

import sys
from pathlib import Path

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.settings import load_settings
from dicomgate.sources.pacs import jobs as pacs_jobs
from dicomgate.sources.pacs.service import PacsService
from dicomgate.sources.scp import Receiver


def main(url: str, data: str, receiver_port: str, orthanc_port: str, job_id: str) -> None:
    root = Path(data)
    intake = Intake(
        Database(url), FilesystemBlobStore(root / "blobs"), FilesystemBlobStore(root / "set-aside")
    )
    node = {
        "name": "orthanc",
        "ae_title": "ORTHANC",
        "host": "127.0.0.1",
        "port": int(orthanc_port),
    }
    settings = load_settings(
        data_dir=root, dicom_port=int(receiver_port), ae_title="DICOMGATE",
        pacs={"nodes": [node], "series_backoff": 0.0},
    )  # fmt: skip
    receiver = Receiver(settings, intake)
    pacs_jobs.bind(PacsService(settings, intake))
    jobs = Jobs(intake, JobsConfig(lease_seconds=1, max_attempts=3))
    jobs.engine.start(schedule_recovered=False)
    try:
        jobs.engine.run(job_id)
    finally:
        receiver.stop()


if __name__ == "__main__":
    main(*sys.argv[1:6])
