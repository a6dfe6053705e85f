"""Copy archived instances into a folder tree sorted as pacsanini sorts it."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path

from pydicom import dcmread
from sqlalchemy import select

from dicomgate.archive.models import Instance
from dicomgate.intake.receive import Intake


def _safe(value: str) -> str:
    text = "".join(c if c.isalnum() or c in "._^-" else "_" for c in value.strip()) or "_"
    return "_" if set(text) <= {"."} else text


def tree_path(
    directory: Path, sort_by: str, patient_id: str, study: str, series: str, sop: str
) -> Path:
    """Return where pacsanini's ``sort_by`` puts an instance.

    ``PATIENT``: dir/patient/study/series/sop.dcm, ``STUDY``: dir/study/series/sop.dcm,
    ``IMAGE``: dir/sop.dcm; every component is made safe, so peer text never escapes ``directory``.
    """
    image = _safe(sop) + ".dcm"
    if sort_by == "IMAGE":
        return directory / image
    tail = directory / _safe(study) / _safe(series) / image
    if sort_by == "STUDY":
        return tail
    return directory / _safe(patient_id) / tail.relative_to(directory)


def export_tree(intake: Intake, sop_uids: Iterable[str], directory: Path, sort_by: str) -> int:
    """Write the stored file of each instance under ``directory``; return how many."""
    wanted = list(sop_uids)
    written = 0
    for start in range(0, len(wanted), 500):
        with intake.db.reader() as session:
            query = select(Instance.blob_key).where(
                Instance.sop_instance_uid.in_(wanted[start : start + 500])
            )
            keys = list(session.scalars(query))
        for key in keys:
            data = intake.blobs.read(key)
            header = dcmread(io.BytesIO(data), stop_before_pixels=True)
            path = tree_path(
                directory,
                sort_by,
                str(header.get("PatientID", "") or ""),
                str(header.StudyInstanceUID),
                str(header.SeriesInstanceUID),
                str(header.SOPInstanceUID),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            written += 1
    return written
