"""A pacsanini configuration file run unchanged through ``dicomgate find/move/extract -f``."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api_errors import install_error_handlers
from dicomgate.access.pacs_api import create_pacs_api
from dicomgate.archive.index import ensure_project
from dicomgate.auth.guard import open_gate
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from dicomgate.pipeline import advance
from dicomgate.prearchive.context import build_review
from dicomgate.settings import load_settings
from dicomgate.sources.pacs.service import PacsService
from tests.integration.pacs_corpus import CorpusStudy, instance
from tests.integration.pacs_peer import OUR_AE, Peer, start_peer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

CONF = """\
move:
    start_time: {start}
    end_time: {end}
    query_level: STUDY
net:
    local_node:
        aetitle: {our_ae}
        port: {our_port}
    called_node:
        aetitle: ORTHANC
        ip: 127.0.0.1
        port: {port}
find:
    query_level: STUDY
    search_fields:
        - StudyInstanceUID
        - PatientID
        - AccessionNumber
    start_date: "20240101"
    end_date: "20241231"
    modality: CT
storage:
    resources: {work}/resources.csv
    directory: {work}/dicom
    sort_by: PATIENT
tags:
    - tag_name: PatientName
      callback: str
    - tag_name: StudyDate
      tag_alias: study_date
      callback: pacsanini.convert:str2datetime
    - tag_name: Laterality
      default_val: U
      callback: str
    - tag_name: StudyInstanceUID
    - tag_name: SOPInstanceUID
"""


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_peer(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.orthanc.stop()


def _dicomgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "DICOMGATE_DATA_DIR": str(cwd / "data")},
    )


def _conf(peer: Peer, work: Path) -> Path:
    # A window open now, written unquoted as pacsanini's documentation does (local time).
    now = dt.datetime.now()
    start, end = (now - dt.timedelta(hours=2)), (now + dt.timedelta(hours=2))
    text = CONF.format(
        start=start.strftime("%H:%M"),
        end=end.strftime("%H:%M"),
        our_ae=OUR_AE,
        our_port=peer.receiver_port,
        port=peer.orthanc.dicom_port,
        work=work,
    )
    path = work / "pacsaninirc.yaml"
    path.write_text(text)
    return path


def test_find_move_extract_with_a_pacsanini_file(peer: Peer, tmp_path: Path) -> None:
    conf = _conf(peer, tmp_path)
    found = _dicomgate("find", "-f", str(conf), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    with (tmp_path / "resources.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    ct_2024 = [s for s in peer.studies if s.modality == "CT" and s.study_date.startswith("2024")]
    assert {r["StudyInstanceUID"] for r in rows} == {s.study_uid for s in ct_2024}
    assert list(rows[0]) == [
        "Modality", "PatientName", "StudyDate", "StudyInstanceUID", "PatientID", "AccessionNumber",
    ]  # fmt: skip
    assert {r["Modality"] for r in rows} == {"CT"}

    moved = _dicomgate("move", "-f", str(conf), "--into", "directory", cwd=tmp_path)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    expected = sum(len(s.sop_uids) for s in ct_2024)
    assert f"stored: {expected}" in moved.stdout
    files = sorted((tmp_path / "dicom").rglob("*.dcm"))
    assert len(files) == expected
    study = ct_2024[0]
    series, sops = next(iter(study.series.items()))
    assert (
        tmp_path / "dicom" / study.patient_id / study.study_uid / series / f"{sops[0]}.dcm"
    ).is_file()

    again = _dicomgate("move", "-f", str(conf), cwd=tmp_path)
    assert again.returncode == 0 and f"already_stored: {expected}" in again.stdout

    out = tmp_path / "tags.csv"
    extracted = _dicomgate("extract", "-f", str(conf), "--folder", str(tmp_path / "dicom"),
                           "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert extracted.returncode == 0, extracted.stderr
    with out.open() as handle:
        tags = list(csv.DictReader(handle))
    assert len(tags) == expected
    assert list(tags[0]) == [
        "PatientName",
        "study_date",
        "Laterality",
        "StudyInstanceUID",
        "SOPInstanceUID",
    ]
    assert {t["Laterality"] for t in tags} == {"L", "U"}  # the corpus leaves every other one empty
    assert {t["study_date"][:4] for t in tags} == {"2024"}

    parquet = tmp_path / "tags.parquet"
    as_parquet = _dicomgate("extract", "-f", str(conf), "--folder", str(tmp_path / "dicom"),
                            "-o", str(parquet), cwd=tmp_path)  # fmt: skip
    assert as_parquet.returncode == 0, as_parquet.stderr
    table = pq.read_table(parquet)
    assert table.column_names == list(tags[0]) and table.num_rows == expected
    assert sorted(table.column("SOPInstanceUID").to_pylist()) == sorted(
        t["SOPInstanceUID"] for t in tags
    )
    assert set(table.column("Laterality").to_pylist()) == {"L", "U"}


def test_bad_pacsanini_file_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("net:\n  local_node: {aetitle: A}\n  called_node: {aetitle: B}\n")
    done = _dicomgate("find", "-f", str(conf), cwd=tmp_path)
    assert done.returncode == 2 and "ip and port" in done.stderr
    missing = _dicomgate("move", "-f", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    unknown = _dicomgate("extract", "-f", str(conf), "--folder", str(tmp_path), "--format", "xml",
                         cwd=tmp_path)  # fmt: skip
    assert unknown.returncode == 2 and "csv or parquet" in unknown.stderr
    to_stdout = _dicomgate("extract", "-f", str(conf), "--folder", str(tmp_path), "--format",
                           "parquet", cwd=tmp_path)  # fmt: skip
    assert to_stdout.returncode == 2 and "--output" in to_stdout.stderr


def test_rest_extract_streams_a_project(intake: Intake, peer: Peer, tmp_path: Path) -> None:
    study = CorpusStudy("PAT100", "FOX^FAY", "1.2.826.0.1.3680043.8.498.100", "20240707", "A", "CT")
    for n in range(3):
        result = receive(intake, instance(study, "1.2.826.0.1.3680043.8.498.100.1", n + 1),
                         Origin(OriginKind.IMPORT))  # fmt: skip
        assert result.ok
    with intake.db.unit_of_work() as session:
        ensure_project(session, "DEFAULT")
    settings = load_settings(None, data_dir=tmp_path / "site", stable_after=0.0)
    advance(build_review(settings, intake))
    app = FastAPI()
    app.include_router(create_pacs_api(PacsService(peer.settings(tmp_path), intake), open_gate()))
    install_error_handlers(app)
    client = TestClient(app)
    response = client.get(
        "/api/projects/DEFAULT/extract",
        params={
            "tags": "PatientID:pid,StudyDate:date:str2datetime,Laterality,InstanceNumber:n:int"
        },
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0] == "pid,date,Laterality,n"
    assert lines[1:] == ["PAT100,2024-07-07T00:00:00,L,1", "PAT100,2024-07-07T00:00:00,,2",
                         "PAT100,2024-07-07T00:00:00,L,3"]  # fmt: skip
    assert client.get("/api/projects/NOPE/extract", params={"tags": "PatientID"}).status_code == 404
    bad = client.get("/api/projects/DEFAULT/extract", params={"tags": "PatientID::os:getcwd"})
    assert bad.status_code == 400


def test_pacs_commands(peer: Peer, tmp_path: Path) -> None:
    config = tmp_path / "dicomgate.yaml"
    node = f"{{name: orthanc, ae_title: ORTHANC, host: 127.0.0.1, port: {peer.orthanc.dicom_port}}}"
    config.write_text(f"pacs:\n  nodes:\n    - {node}\n")
    echo = _dicomgate("pacs", "echo", "orthanc", "-c", str(config), cwd=tmp_path)
    assert echo.returncode == 0 and "0x0000" in echo.stdout
    study = peer.studies[0]
    args = ["--level", "SERIES", "-k", f"StudyInstanceUID={study.study_uid}", "-c", str(config)]
    as_csv = _dicomgate("pacs", "find", "orthanc", *args, "--format", "csv", cwd=tmp_path)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))
    assert {r["SeriesInstanceUID"] for r in rows} == set(study.series)
    table = _dicomgate("pacs", "find", "orthanc", *args, cwd=tmp_path)
    assert "2 result(s)" in table.stdout
    unknown = _dicomgate("pacs", "echo", "nowhere", "-c", str(config), cwd=tmp_path)
    assert unknown.returncode == 2 and "nowhere" in unknown.stderr
