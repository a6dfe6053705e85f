"""STOW-RS over raw HTTP: statuses, per-instance results and where each landed, refusals kept."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicomgate.archive.models import Instance, SetAside
from tests.integration.dicomweb.conftest import Gate, ct_copy, multipart_parts

BOUNDARY = "test-boundary-1234"
ANY_SYNTAX = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_BODY = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _body(*parts: bytes | tuple[str, bytes]) -> bytes:
    out = b""
    for part in parts:
        kind, data = part if isinstance(part, tuple) else ("application/dicom", part)
        out += f"--{BOUNDARY}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def _post(gate: Gate, body: bytes, path: str = "/studies", **headers: str) -> httpx.Response:
    return gate.http.post(
        path,
        content=body,
        headers={"Content-Type": DICOM_BODY, "Accept": "application/dicom+json", **headers},
        timeout=60,
    )


def _count(gate: Gate, model: Any) -> int:
    with gate.intake.db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _sop(data: bytes) -> str:
    return str(pydicom.dcmread(BytesIO(data)).SOPInstanceUID)


def test_all_stored_says_where_each_landed(gate: Gate) -> None:
    study = generate_uid()
    parts = [ct_copy(study=study) for _ in range(3)]
    response = _post(gate, _body(*parts), f"/studies/{study}")
    assert response.status_code == 200, response.text
    body = response.json()
    items = body["00081199"]["Value"]
    assert [i["00081155"]["Value"][0] for i in items] == [_sop(p) for p in parts]
    for item in items:
        assert item["00090010"]["Value"] == ["DICOMGATE STOW"]
        assert item["00091001"]["Value"] == ["STORED"]
        assert item["00091002"]["Value"] == ["RECEIVING"]  # staged, waiting to be archived
        assert item["00091003"]["Value"] == ["DEFAULT"]  # the target project
        assert isinstance(item["00091004"]["Value"][0], int)  # the staging session
        sop = item["00081155"]["Value"][0]
        url = item["00081190"]["Value"][0]
        assert url.startswith(f"{gate.dicomweb}/studies/{study}/series/")
        assert url.endswith(f"/instances/{sop}")
    assert body["00081190"]["Value"][0].endswith(f"/studies/{study}")
    assert _count(gate, Instance) == 3


def test_stow_then_wado_is_a_byte_identical_round_trip(gate: Gate) -> None:
    data = ct_copy()
    stored = _post(gate, _body(data)).json()["00081199"]["Value"][0]
    url = stored["00081190"]["Value"][0]
    response = gate.http.get(url, headers={"Accept": ANY_SYNTAX})
    [(_headers, content)] = multipart_parts(response.headers["content-type"], response.content)
    assert content[128:] == data[128:]  # only the preamble is zeroed on intake


def test_sending_again_is_reported_as_already_stored(gate: Gate) -> None:
    data = ct_copy()
    assert _post(gate, _body(data)).status_code == 200
    again = _post(gate, _body(data))
    assert again.status_code == 200
    assert again.json()["00081199"]["Value"][0]["00091001"]["Value"] == ["ALREADY_STORED"]


def test_mixed_batch_is_202_with_the_failure_reason(gate: Gate) -> None:
    good = ct_copy()
    response = _post(gate, _body(good, b"this is not DICOM at all, just text" * 10))
    assert response.status_code == 202, response.text
    body = response.json()
    assert [i["00081155"]["Value"][0] for i in body["00081199"]["Value"]] == [_sop(good)]
    assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert _count(gate, SetAside) == 1  # the refused part is kept with its reason


def test_study_mismatch_is_409_and_nothing_is_stored(gate: Gate) -> None:
    data = ct_copy()
    response = _post(gate, _body(data), f"/studies/{generate_uid()}")
    assert response.status_code == 409, response.text
    failed = response.json()["00081198"]["Value"][0]
    assert failed["00081155"]["Value"] == [_sop(data)]
    assert failed["00081197"]["Value"] == [0xA901]
    assert _count(gate, Instance) == 0
    with gate.intake.db.reader() as session:
        assert session.scalars(select(SetAside.reason)).all() == ["study_mismatch"]


def test_non_dicom_parts_only_is_400(gate: Gate) -> None:
    response = _post(gate, _body(b"\x00" * 300, ("image/jpeg", b"\xff\xd8\xff" + b"0" * 100)))
    assert response.status_code == 400, response.text
    assert len(response.json()["00081198"]["Value"]) == 2
    assert _count(gate, SetAside) == 2


WRONG_TYPES = [
    "application/dicom",
    "application/json",
    'multipart/related; type="application/dicom+json"; boundary=x',
    "multipart/form-data; boundary=x",
    "",
]


def test_wrong_media_type_is_415(gate: Gate) -> None:
    for content_type in WRONG_TYPES:
        response = _post(gate, _body(ct_copy()), **{"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert _count(gate, Instance) == 0


def test_malformed_bodies_are_400(gate: Gate) -> None:
    assert _post(gate, b"").status_code == 400
    assert _post(gate, b"no boundary anywhere in here").status_code == 400
    no_boundary = 'multipart/related; type="application/dicom"'
    assert _post(gate, _body(ct_copy()), **{"Content-Type": no_boundary}).status_code == 400
    assert _post(gate, _body(ct_copy()), "/studies/not-a-uid").status_code == 400


def test_truncated_instance_is_refused_and_kept(gate: Gate) -> None:
    data = ct_copy()
    response = _post(gate, _body(data[: len(data) // 2]))
    assert response.status_code == 400, response.text
    assert _count(gate, Instance) == 0
    assert _count(gate, SetAside) == 1


def test_declared_length_over_the_limit_is_413_at_once(small_gate: Gate) -> None:
    port = int(small_gate.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            "POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {DICOM_BODY}\r\nContent-Length: {10**12}\r\n\r\n"
        )
        sock.sendall(head.encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413"


def test_streamed_body_over_the_limit_is_413_and_nothing_is_stored(small_gate: Gate) -> None:
    parts = [ct_copy() for _ in range(20)]  # about 10 KB each

    def chunks() -> Iterator[bytes]:
        yield _body(*parts)

    response = small_gate.http.post(
        "/studies",
        content=chunks(),  # chunked: no Content-Length to refuse up front
        headers={"Content-Type": DICOM_BODY},
        timeout=60,
    )
    assert response.status_code == 413
    assert _count(small_gate, Instance) == 0


def test_the_same_instance_twice_in_one_request_is_stored_once(gate: Gate) -> None:
    data, other = ct_copy(), ct_copy()
    response = _post(gate, _body(data, other, data))
    assert response.status_code == 200, response.text
    outcomes = [i["00091001"]["Value"][0] for i in response.json()["00081199"]["Value"]]
    assert outcomes == ["STORED", "STORED", "ALREADY_STORED"]
    assert _count(gate, Instance) == 2


def test_stow_requests_are_answered_in_front_of_the_routes(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomgate.access.dicomweb import stow_lane

    taken: list[object] = []
    match, project = stow_lane.match_stow, stow_lane.project_of
    monkeypatch.setattr(stow_lane, "match_stow", lambda p: taken.append(match(p)) or match(p))
    monkeypatch.setattr(stow_lane, "project_of", lambda r: taken.append(project(r)) or project(r))
    study = generate_uid()
    assert _post(gate, _body(ct_copy())).status_code == 200
    assert _post(gate, _body(ct_copy(study=study)), f"/studies/{study}").status_code == 200
    assert _post(gate, _body(ct_copy()), "/studies?project=DEFAULT").status_code == 200
    assert taken == [(None,), (None,), (study,), (None,), (None,), ("DEFAULT",)]
    # What the routes' parameters refuse goes on to them: their validation answers it (400).
    taken.clear()
    long_project = _post(gate, _body(ct_copy()), "/studies?project=" + "P" * 65)
    long_study = _post(gate, _body(ct_copy()), "/studies/" + "1" * 65)
    assert (long_project.status_code, long_study.status_code) == (400, 400)
    assert "project" in long_project.json()["detail"] and "study" in long_study.json()["detail"]
    assert taken == [(None,), None, None]
    assert gate.http.get("/studies").status_code == 200  # searches are not STOW-RS
    assert _count(gate, Instance) == 3


def test_an_unexpected_failure_of_a_stow_is_a_500_and_the_server_goes_on(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dicomgate.sources.stow import Stow

    async def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Stow, "store", broken)
    assert _post(gate, _body(ct_copy())).status_code == 500
    monkeypatch.undo()
    # uvicorn closes the connection of a request that failed this way; a new one is answered.
    again = httpx.post(
        f"{gate.dicomweb}/studies", content=_body(ct_copy()), headers={"Content-Type": DICOM_BODY}
    )
    assert again.status_code == 200
