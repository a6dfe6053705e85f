"""DICOM peers limited to their projects, C-MOVE to known destinations only, and the audit
records of the DIMSE side, against dcmtk findscu/movescu/getscu/storescu and a dcmtk storescp."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomgate.auth.audit import AuditRecord, AuditTrail
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES
from tests.integration.dimse.conftest import serve
from tests.integration.dimse.corpus import Corpus
from tests.integration.dimse.dcmtk import StoreSCP, findscu, keys, run, storescu

LOCAL = ["127.0.0.1"]
QR = ["echo", "find", "move", "get"]


@pytest.fixture()
def database(sqlite_database: Database) -> Database:
    """SQLite only: the project filter's SQL runs on PostgreSQL in the C-FIND dialect tests."""
    return sqlite_database


Start = Callable[..., Receiver]


@pytest.fixture()
def start(intake: Intake, audit: AuditTrail, storescp: StoreSCP) -> Iterator[Start]:
    started: list[Receiver] = []

    def _start(peers: list[dict[str, Any]], processes: int = 1, **auth: Any) -> Receiver:
        auth = {"dicom_peers": peers, **auth}
        destinations = [storescp.destination()]
        started.append(serve(intake, audit, auth, processes, destinations=destinations))
        return started[-1]

    yield _start
    for receiver in started:
        receiver.stop()


def _peer(ae: str, projects: list[str], operations: list[str] = QR) -> dict[str, Any]:
    return {"ae_title": ae, "hosts": LOCAL, "operations": operations, "projects": projects}


STORESCP_PEER = _peer("STORESCP", [], ["echo"])  # a known destination that may not query


def _studies_found(port: int, calling: str, out: Path) -> set[str]:
    done, responses = findscu(
        port, out, "-S", calling, QueryRetrieveLevel="STUDY", StudyInstanceUID=""
    )
    assert done.returncode == 0, done.stderr
    return {str(r.StudyInstanceUID) for r in responses}


def _records(audit: AuditTrail, action: str, count: int = 1) -> list[AuditRecord]:
    # Import records are written when the connection closes, just after the peer is told.
    for _ in range(100):
        found = audit.records(action=action)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    return audit.records(action=action)


def test_find_sees_only_the_peers_projects(
    start: Start, placed: dict[str, list[str]], corpus: Corpus, tmp_path: Path, audit: AuditTrail
) -> None:
    scp = start([_peer("LUNGWS", ["LUNG"]), _peer("NOWHERE", []), _peer("ALL", ["*"])])
    assert _studies_found(scp.port, "LUNGWS", tmp_path / "a") == set(placed["LUNG"])
    assert _studies_found(scp.port, "NOWHERE", tmp_path / "b") == set()  # closed: no projects
    assert _studies_found(scp.port, "ALL", tmp_path / "c") == {*corpus.studies, corpus.jpeg_study}
    # A study of another project answers like one that does not exist.
    brain = placed["BRAIN"][0]
    done, responses = findscu(
        scp.port, tmp_path / "d", "-S", "LUNGWS", QueryRetrieveLevel="STUDY",
        StudyInstanceUID=brain,
    )  # fmt: skip
    assert done.returncode == 0 and responses == []
    # Patient level: PID001 has a LUNG and a BRAIN study; only the LUNG one is counted.
    done, responses = findscu(
        scp.port, tmp_path / "e", "-P", "LUNGWS", QueryRetrieveLevel="PATIENT",
        PatientID="PID001", NumberOfPatientRelatedStudies="",
    )  # fmt: skip
    assert [int(r.NumberOfPatientRelatedStudies) for r in responses] == [1]
    queries = _records(audit, "query", 5)
    assert [(r.event_code, r.actor) for r in queries[:2]] == [
        ("110112", "LUNGWS"),
        ("110112", "NOWHERE"),
    ]
    assert queries[0].objects == {"calling_ae": "LUNGWS", "level": "STUDY", "results": 2}
    assert queries[0].source == "127.0.0.1" and "PID001" not in str(queries[4].to_json())


def test_open_receiver_peer_without_projects_sees_every_project(
    start: Start, placed: dict[str, list[str]], tmp_path: Path
) -> None:
    scp = start([_peer("LISTED", [])], dicom_open=True)
    assert len(_studies_found(scp.port, "LISTED", tmp_path / "a")) == 4
    assert len(_studies_found(scp.port, "STRANGER", tmp_path / "b")) == 4


def _move(port: int, calling: str, destination: str, study: str) -> tuple[int, str]:
    done = run(
        "movescu", port, "-aet", calling, "-aem", destination, "-S",
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study),
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_move_of_another_projects_study_sends_nothing(
    start: Start, placed: dict[str, list[str]], corpus: Corpus, storescp: StoreSCP,
    audit: AuditTrail,
) -> None:  # fmt: skip
    scp = start([_peer("LUNGWS", ["LUNG"]), STORESCP_PEER])
    code, output = _move(scp.port, "LUNGWS", "STORESCP", placed["BRAIN"][0])
    assert code == 0, output
    assert storescp.received() == {}
    lung = placed["LUNG"][0]
    code, output = _move(scp.port, "LUNGWS", "STORESCP", lung)
    assert code == 0, output
    expected = [uid for series in corpus.series[lung] for uid in corpus.instances[series]]
    assert sorted(storescp.received()) == sorted(expected)
    nothing, moved = _records(audit, "retrieve", 2)
    assert (nothing.event_code, nothing.actor, nothing.objects["instances"]) == (
        "110104",
        "LUNGWS",
        0,
    )
    assert moved.objects == {
        "calling_ae": "LUNGWS",
        "operation": "move",
        "destination_ae": "STORESCP",
        "instances": 5,
        "studies": 1,
        "study_uids": [lung],
    }


def test_get_of_another_projects_study_gets_zero_instances(
    start: Start, placed: dict[str, list[str]], tmp_path: Path
) -> None:
    scp = start([_peer("LUNGWS", ["LUNG"])])
    for study, expected in ((placed["BRAIN"][0], 0), (placed["LUNG"][1], 2)):
        out = tmp_path / study
        out.mkdir()
        done = run(
            "getscu", scp.port, "-aet", "LUNGWS", "-S", "-od", str(out),
            *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(list(out.iterdir())) == expected


def test_move_only_to_known_destinations(
    start: Start, placed: dict[str, list[str]], storescp: StoreSCP, audit: AuditTrail
) -> None:
    # STORESCP has an address (query_retrieve.destinations) but is not a listed peer.
    scp = start([_peer("LUNGWS", ["LUNG"])])
    for destination in ("STORESCP", "ELSEWHERE"):
        code, output = _move(scp.port, "LUNGWS", destination, placed["LUNG"][0])
        assert code != 0
        assert "Refused: MoveDestinationUnknown" in output, output
    assert storescp.received() == {}
    refused = _records(audit, "retrieve", 2)
    assert [(r.outcome, r.objects["destination_ae"], r.detail) for r in refused] == [
        (4, "STORESCP", "unknown destination"),
        (4, "ELSEWHERE", "unknown destination"),
    ]


def test_operations_not_granted_are_refused_and_audited_once(
    start: Start, placed: dict[str, list[str]], tmp_path: Path, audit: AuditTrail,
    storescp: StoreSCP,
) -> None:  # fmt: skip
    scp = start([_peer("STOREONLY", ["LUNG"], ["echo", "store"]), STORESCP_PEER])
    done, responses = findscu(
        scp.port, tmp_path / "f", "-S", "STOREONLY", QueryRetrieveLevel="STUDY"
    )
    assert responses == [] and "0x124" in done.stdout + done.stderr
    _, output = _move(scp.port, "STOREONLY", "STORESCP", placed["LUNG"][0])
    assert "0x124" in output.lower(), output
    assert storescp.received() == {}
    out = tmp_path / "g"
    out.mkdir()
    done = run(
        "getscu", scp.port, "-aet", "STOREONLY", "-S", "-od", str(out),
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=placed["LUNG"][0]),
    )  # fmt: skip
    assert "0x124" in (done.stdout + done.stderr).lower() and list(out.iterdir()) == []
    for action in ("find_refused", "move_refused", "get_refused"):
        [record] = audit.records(action=action)
        assert (record.event_code, record.actor) == ("110113", "STOREONLY")


CT = PYDICOM_FILES / "CT_small.dcm"
MR = PYDICOM_FILES / "MR_small.dcm"


def _storescu(port: int, calling: str, *args: str) -> str:
    done = storescu(port, calling, *args, str(CT), str(MR))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_imports_and_rejections_audited_once_per_association(
    start: Start, audit: AuditTrail, processes: int, tmp_path: Path
) -> None:
    scp = start([_peer("CT1", [], ["echo", "store", "find"])], processes=processes)
    runs = 3 if processes > 1 else 1  # several associations, so the workers take some too
    for _ in range(runs):
        _storescu(scp.port, "CT1")
        stranger = run("echoscu", scp.port, "-aet", "STRANGER")
        assert stranger.returncode != 0
    imports = _records(audit, "import", runs)
    assert len(imports) == runs
    for record in imports:
        assert (record.event_code, record.actor, record.outcome) == ("110104", "CT1", 0)
        assert record.objects["instances"] == 2 and record.objects["failed"] == 0
    # The first association stored two new studies; later ones found them already stored.
    assert imports[0].objects["staging_sessions"] == len(imports[0].objects["staging_pks"]) == 2
    assert len(audit.records(action="association_rejected")) == runs
    assert len(_studies_found(scp.port, "CT1", tmp_path / "q")) == 0  # stored, not its project
    assert audit.verify() == []
