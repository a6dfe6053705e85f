"""Shared helpers of the prearchive tests: a Review over the test intake, Part-10 builders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterable
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from fastapi import FastAPI
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api import install_error_handlers
from dicomgate.access.projects_api import create_projects_api
from dicomgate.archive.models import StagingSession
from dicomgate.archive.projects import ensure_quarantine, sync_project
from dicomgate.auth.guard import open_gate
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, ReceiveResult, receive
from dicomgate.jobs import Jobs
from dicomgate.pipeline import advance
from dicomgate.prearchive.api import create_prearchive_api
from dicomgate.prearchive.context import Review, build_review
from dicomgate.settings import load_settings
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from dicomgate.sources.inbox_api import create_inbox_router
from tests.conftest import PYDICOM_FILES

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

IMPORT = Origin(OriginKind.IMPORT, user="tester")
STORESCU_ENV = {**os.environ, "TCP_NODELAY": "1"}


def make_review(intake: Intake, tmp: Path, **options: Any) -> Review:
    """Return a Review over ``intake`` with settings ``options``; projects are created."""
    settings = load_settings(data_dir=tmp / "data", stable_after=0, **options)
    with intake.db.unit_of_work() as session:
        sync_project(session, settings.default_project)
        ensure_quarantine(session)
        for p in settings.projects:
            sync_project(session, p.id, p.name, p.description, p.archive_policy.value)
    return build_review(settings, intake)


def with_protocol(review: Review, tmp: Path, text: str) -> Review:
    """Return ``review`` with the sorting protocol ``text``."""
    path = tmp / "protocol.yaml"
    path.write_text(text)
    settings = review.settings.model_copy(
        update={"prearchive": review.settings.prearchive.model_copy(update={"protocol": path})}
    )
    return build_review(settings, review.intake)


def part10(ds: Dataset) -> bytes:
    """Return ``ds`` as a Part-10 file in Explicit VR Little Endian."""
    ds = ds.copy()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def ct(study: str | None = None, **attributes: Any) -> Dataset:
    """Return a copy of pydicom's CT_small with fresh UIDs (or ``study``) and ``attributes``."""
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID = "DOE^JANE", "P001"
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def send(
    review: Review, datasets: Iterable[Dataset], origin: Origin = IMPORT
) -> list[ReceiveResult]:
    """Receive each dataset through intake."""
    return [receive(review.intake, part10(ds), origin) for ds in datasets]


def settle(review: Review) -> None:
    """Run one spine pass with every receiving session stable."""
    advance(review)


def staging(review: Review, pk: int | None = None) -> StagingSession:
    """Return one staging session (the only or the newest one when ``pk`` is None)."""
    with review.intake.db.reader() as session:
        if pk is not None:
            return session.get_one(StagingSession, pk)
        return session.scalars(select(StagingSession).order_by(StagingSession.pk.desc())).first()  # type: ignore[return-value]


def codes(row: StagingSession) -> list[str]:
    """Return the reason codes of a staging session."""
    return [r["code"] for r in row.reasons]


def client(review: Review) -> TestClient:
    """Return an HTTP client over the projects and prearchive routers."""
    app = FastAPI()
    app.include_router(create_projects_api(review.intake.db, open_gate()))
    app.include_router(create_prearchive_api(review, open_gate()))
    install_error_handlers(app)
    return TestClient(app)


def inbox_client(jobs: Jobs, intake: Intake, inbox_root: Path) -> TestClient:
    """Return an HTTP client over the server-side inbox routes (``/api/imports``, XNAT form)."""
    app = FastAPI()
    app.include_router(create_inbox_router(jobs, intake.db, inbox_root, open_gate()))
    install_error_handlers(app)
    return TestClient(app)


def manual(review: Review, project: str) -> Review:
    """Set ``project`` to manual review."""
    with review.intake.db.unit_of_work() as session:
        sync_project(session, project, policy="manual")
    return replace(review)


def dicomgate(tmp: Path, *args: str, config: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``dicomgate ARGS --config tmp/config.yaml`` as a user does, data under ``tmp/data``.

    A checkout run with ``PYTHONPATH=src`` passes it on, so the subprocess runs its sources.
    """
    extra = ["--config", str(tmp / "config.yaml")] if config else []
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "DICOMGATE_DATA_DIR": str(tmp / "data")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args, *extra],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def prearchive_ls(tmp: Path) -> list[dict[str, str]]:
    """Return the rows of ``dicomgate prearchive ls`` (column name -> cell)."""
    done = dicomgate(tmp, "prearchive", "ls")
    assert done.returncode == 0, done.stderr
    names = ("id", "status", "target", "subject", "session", "n", "reasons")
    rows = []
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│|]", line)[1:-1]]
        if len(cells) == len(names) and cells[0].isdigit():
            rows.append(dict(zip(names, cells, strict=True)))
    return rows


def write_folder(tmp: Path, name: str, datasets: Iterable[Dataset]) -> Path:
    """Write ``datasets`` as Part-10 files into a new folder ``tmp/name``; return it."""
    folder = tmp / name
    folder.mkdir(parents=True)
    for i, ds in enumerate(datasets):
        (folder / f"{i}.dcm").write_bytes(part10(ds))
    return folder


def storescu(
    port: int, folder: Path, calling: str, called: str = "DGTEST", *, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """Push every file below ``folder`` with dcmtk's storescu; assert it succeeded, or not."""
    done = subprocess.run(
        ["storescu", "-aet", calling, "-aec", called, "+sd", "127.0.0.1", str(port), str(folder)],
        env=STORESCU_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) is ok, done.stderr
    return done
