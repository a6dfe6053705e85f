"""C-MOVE and C-GET SCP against dcmtk movescu/getscu, a dcmtk storescp and Orthanc."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicomgate.access.dimse import takeover
from dicomgate.db import Database
from dicomgate.dicom import reactor
from dicomgate.dicom.known_requests import KnownRequests
from dicomgate.dicom.part10 import parse_file
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.integration.dimse.conftest import AE_TITLE, serve
from tests.integration.dimse.corpus import Corpus
from tests.integration.dimse.dcmtk import StoreSCP, keys, run
from tests.orthanc import start_orthanc


@pytest.fixture()
def database(sqlite_database: Database) -> Database:
    """SQLite only here (see ``sqlite_database``)."""
    return sqlite_database


def _dataset_bytes(data: bytes) -> bytes:
    parsed = parse_file(data)
    return parsed.data[parsed.dataset_offset :]


@pytest.fixture()
def mover(intake: Intake, corpus: Corpus, storescp: StoreSCP) -> Iterator[Receiver]:
    server = serve(intake, destinations=[storescp.destination()])
    yield server
    server.stop()


def _movescu(port: int, destination: str, *args: str) -> tuple[int, str]:
    done = run("movescu", port, "-aem", destination, *args)
    return done.returncode, done.stderr + done.stdout


def test_move_study_to_storescp_sends_the_stored_bytes(
    mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    study = corpus.studies[0]
    code, output = _movescu(
        mover.port, "STORESCP", "-S", *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    )
    assert code == 0, output
    assert "Received Final Move Response (Success)" in output
    received = storescp.received()
    expected = [uid for series in corpus.series[study] for uid in corpus.instances[series]]
    assert sorted(received) == sorted(expected)
    for uid in expected:
        assert _dataset_bytes(received[uid]) == _dataset_bytes(corpus.files[uid]), uid


def test_move_series_and_images_with_uid_lists(
    mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    study = corpus.studies[0]
    ct, mr = corpus.series[study]
    code, output = _movescu(
        mover.port,
        "STORESCP",
        "-S",
        *keys(QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID=mr),
    )
    assert code == 0, output
    two = "\\".join(corpus.instances[ct][:2])
    code, output = _movescu(
        mover.port,
        "STORESCP",
        "-P",
        *keys(QueryRetrieveLevel="IMAGE", PatientID="PID001", SOPInstanceUID=two),
    )
    assert code == 0, output
    assert sorted(storescp.received()) == sorted(corpus.instances[mr] + corpus.instances[ct][:2])


def test_move_patient_level(mover: Receiver, corpus: Corpus, storescp: StoreSCP) -> None:
    code, output = _movescu(
        mover.port, "STORESCP", "-P", *keys(QueryRetrieveLevel="PATIENT", PatientID="PID002")
    )
    assert code == 0, output
    study = corpus.studies[2]
    assert sorted(storescp.received()) == sorted(corpus.instances[corpus.series[study][0]])


def test_compressed_instance_sent_as_stored_when_accepted(
    intake: Intake, corpus: Corpus, tmp_path: Path
) -> None:
    peer = StoreSCP(tmp_path / "all", "STOREALL", "+xa")  # accepts every transfer syntax
    server = serve(intake, destinations=[peer.destination()])
    try:
        study = corpus.jpeg_study
        code, output = _movescu(
            server.port, "STOREALL", "-S", *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        )
        assert code == 0, output
        data = peer.received()[corpus.jpeg_instance]
    finally:
        server.stop()
        peer.stop()
    assert pydicom.dcmread(BytesIO(data)).file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert _dataset_bytes(data) == _dataset_bytes(corpus.files[corpus.jpeg_instance])


def test_compressed_instance_decompressed_only_when_refused(
    mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    # storescp accepts only uncompressed syntaxes by default.
    code, output = _movescu(
        mover.port,
        "STORESCP",
        "-S",
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=corpus.jpeg_study),
    )
    assert code == 0, output
    received = pydicom.dcmread(BytesIO(storescp.received()[corpus.jpeg_instance]))
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    original = pydicom.dcmread(BytesIO(corpus.files[corpus.jpeg_instance]))
    assert received.pixel_array.shape == original.pixel_array.shape


def test_unknown_move_destination_refused_with_a801(
    mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    code, output = _movescu(
        mover.port,
        "ELSEWHERE",
        "-S",
        *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=corpus.studies[0]),
    )
    assert code != 0
    assert "Refused: MoveDestinationUnknown" in output
    assert storescp.received() == {}


def test_malformed_move_identifiers_refused_and_nothing_sent(
    mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    bad = [
        keys(QueryRetrieveLevel="STUDY"),  # no Study Instance UID: never "everything"
        keys(QueryRetrieveLevel="STUDY", StudyInstanceUID="*"),
        keys(QueryRetrieveLevel="PATIENT", PatientID="PID00*"),
        keys(QueryRetrieveLevel="FRAME", StudyInstanceUID=corpus.studies[0]),
        keys(StudyInstanceUID=corpus.studies[0]),
    ]
    for args in bad:
        code, output = _movescu(mover.port, "STORESCP", "-P", *args)
        assert code != 0, (args, output)
        assert "Failed: UnableToProcess" in output, (args, output)
    assert storescp.received() == {}


def test_missing_blob_gives_b000_with_the_failed_uid(
    intake: Intake, mover: Receiver, corpus: Corpus, storescp: StoreSCP
) -> None:
    from sqlalchemy import select

    from dicomgate.archive.models import Instance

    study = corpus.studies[0]
    lost = corpus.instances[corpus.series[study][1]][0]
    with intake.db.reader() as session:
        key = session.scalars(
            select(Instance.blob_key).where(Instance.sop_instance_uid == lost)
        ).one()
    intake.blobs.remove(key)
    _, output = _movescu(
        mover.port, "STORESCP", "-S", *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    )
    assert "Warning: SubOperationsCompleteOneOrMoreFailures" in output, output
    assert len(storescp.received()) == 4 and lost not in storescp.received()
    # pynetdicom as a second, real client shows the final identifier dcmtk does not print.
    ae = AE(ae_title="PYMOVE")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", mover.port, ae_title=AE_TITLE)
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", study
    responses = list(
        assoc.send_c_move(identifier, "STORESCP", StudyRootQueryRetrieveInformationModelMove)
    )
    assoc.release()
    status, final = responses[-1]
    assert status.Status == 0xB000
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (4, 1)
    assert final.FailedSOPInstanceUIDList == lost
    pending = [s for s, _ in responses[:-1]]
    assert [s.NumberOfRemainingSuboperations for s in pending] == [4, 3, 2, 1, 0]


def test_get_series_with_getscu(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.studies[0]
    series = corpus.series[study][0]
    out = tmp_path / "got"
    out.mkdir()
    done = run(
        "getscu",
        qr_scp.port,
        "-S",
        "+B",
        "-od",
        str(out),
        *keys(QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID=series),
    )
    assert done.returncode == 0, done.stderr
    assert "Number of Completed Suboperations : 3" in done.stderr
    got = {str(pydicom.dcmread(p).SOPInstanceUID): p.read_bytes() for p in out.iterdir()}
    assert sorted(got) == sorted(corpus.instances[series])
    for uid, data in got.items():
        assert _dataset_bytes(data) == _dataset_bytes(corpus.files[uid])


def test_a_requester_repeating_its_association_request_is_served_alike(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getscu's 17 KB A-ASSOCIATE-RQ is decoded once; the second association reuses it."""
    decoded: list[int] = []

    class Counting(KnownRequests):
        def decode(self, data: bytes) -> Any:
            decoded.append(len(self))
            return super().decode(data)

    remembered = Counting()
    monkeypatch.setattr(reactor, "KNOWN_REQUESTS", remembered)
    study = corpus.studies[0]
    series = corpus.series[study][0]
    for attempt in range(2):
        out = tmp_path / f"got{attempt}"
        out.mkdir()
        query = keys(QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID=series)
        done = run("getscu", qr_scp.port, "-S", "-od", str(out), *query)
        assert "Number of Completed Suboperations : 3" in done.stderr, done.stderr
        got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out.iterdir()}
        assert sorted(got) == sorted(corpus.instances[series])
    assert decoded == [0, 1] and len(remembered) == 1  # kept at the first, found at the second


def test_get_refused_without_unique_key(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    done = run(
        "getscu", qr_scp.port, "-S", "-od", str(tmp_path), *keys(QueryRetrieveLevel="SERIES")
    )
    assert "Failed: UnableToProcess" in done.stderr, done.stderr  # getscu still exits 0
    assert list(tmp_path.glob("*.dcm")) == []


def test_move_to_orthanc(intake: Intake, corpus: Corpus, tmp_path: Path) -> None:
    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        target = {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orthanc.dicom_port}
        server = serve(intake, destinations=[target])
        try:
            studies = "\\".join([*corpus.studies, corpus.jpeg_study])
            code, output = _movescu(
                server.port,
                "ORTHANC",
                "-S",
                *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=studies),
            )
            assert code == 0, output
        finally:
            server.stop()
        assert orthanc.instance_uids() == set(corpus.files)
    finally:
        orthanc.stop()


def test_unreachable_destination_refused_with_a801(intake: Intake, corpus: Corpus) -> None:
    from tests.conftest import _free_port

    nobody = {"ae_title": "OFFLINE", "host": "127.0.0.1", "port": _free_port()}
    server = serve(intake, destinations=[nobody])
    try:
        study = corpus.studies[1]
        code, output = _movescu(
            server.port, "OFFLINE", "-S", *keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        )
    finally:
        server.stop()
    assert code != 0 and "Refused: MoveDestinationUnknown" in output, output


def test_get_to_a_requester_that_proposes_deflate(qr_scp: Receiver, corpus: Corpus) -> None:
    # A requester that proposes only Deflated Explicit VR Little Endian for its storage
    # classes: the C-STOREs go deflated (the JPEG instance decompressed first, the requester
    # proposing no JPEG syntax).
    received: dict[str, pydicom.Dataset] = {}

    def store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta  # its transfer syntax: the accepted one
        received[str(ds.SOPInstanceUID)] = ds
        return 0x0000

    ae = AE(ae_title="PYGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for storage in (CTImageStorage, SecondaryCaptureImageStorage):
        ae.add_requested_context(storage, [DeflatedExplicitVRLittleEndian])
        roles.append(build_role(storage, scp_role=True))
    assoc = ae.associate(
        "127.0.0.1",
        qr_scp.port,
        ae_title=AE_TITLE,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, store)],
    )
    identifier = pydicom.Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = [corpus.studies[0], corpus.jpeg_study]
    responses = list(assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet))
    accepted = {
        str(cx.abstract_syntax): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts
    }
    assoc.release()
    assert accepted[CTImageStorage] == DeflatedExplicitVRLittleEndian  # what this test is about
    final = responses[-1][0]
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 6), final
    study = corpus.studies[0]
    expected = [uid for series in corpus.series[study] for uid in corpus.instances[series]]
    assert sorted(received) == sorted([*expected, corpus.jpeg_instance])
    for uid in expected:
        original = pydicom.dcmread(BytesIO(corpus.files[uid]))
        assert received[uid].PixelData == original.PixelData, uid
    jpeg = pydicom.dcmread(BytesIO(corpus.files[corpus.jpeg_instance]))
    got = received[corpus.jpeg_instance]
    assert got.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    assert got.pixel_array.shape == jpeg.pixel_array.shape


@pytest.mark.parametrize("operation", ["move", "get"])
def test_the_retrieve_takes_the_association_over_without_waiting_for_a_tick(
    mover: Receiver,
    corpus: Corpus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    # An idle reactor looks at its socket's ``ready`` once per tick; the takeover wakes it
    # instead. With a tick longer than the takeover's patience, only a woken reactor lets it
    # take over (before: 50 ms of every C-MOVE and C-GET spent waiting for the tick).
    monkeypatch.setattr(reactor, "TICK", 5.0)
    monkeypatch.setattr(takeover, "_HOLD_WAIT", 1.0)
    started: list[bool] = []
    start = takeover.Takeover.start

    def recorded(self: takeover.Takeover) -> bool:
        started.append(start(self))
        return started[-1]

    monkeypatch.setattr(takeover.Takeover, "start", recorded)
    study = corpus.studies[0]
    query = keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    if operation == "move":
        code, output = _movescu(mover.port, "STORESCP", "-S", *query)
    else:
        done = run("getscu", mover.port, "-S", "-od", str(tmp_path), *query)
        code, output = done.returncode, done.stderr
    assert code == 0, output
    assert started == [True]


def test_an_idle_reactor_does_not_watch_a_socket_the_retrieve_holds(
    mover: Receiver, corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The C-GET's handler thread reads the requester's C-STORE responses itself. A reactor
    # that still watched the socket woke for each one and looped until it was read, taking
    # the GIL from the handler thread (a third of a C-GET's serving process).
    waits: list[tuple[bool, bool]] = []  # (socket held, socket watched)
    current = threading.local()
    idle_wait, wait_readable = reactor.EventDrivenDUL._idle_wait, reactor.wait_readable

    def recorded_idle_wait(self: reactor.EventDrivenDUL) -> None:
        current.socket = self.socket
        idle_wait(self)

    def recorded_wait(watched: list[Any], timeout: float) -> Any:
        sock = getattr(current, "socket", None)
        if sock is not None:
            waits.append((getattr(sock, "held", False), sock.socket in watched))
        return wait_readable(watched, timeout)

    monkeypatch.setattr(reactor.EventDrivenDUL, "_idle_wait", recorded_idle_wait)
    monkeypatch.setattr(reactor, "wait_readable", recorded_wait)
    study = corpus.studies[0]
    query = keys(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
    done = run("getscu", mover.port, "-S", "-od", str(tmp_path), *query)
    assert done.returncode == 0, done.stderr
    assert any(held for held, _ in waits)  # the reactor did wait while the socket was held
    assert not any(held and watched for held, watched in waits)
    assert any(watched for held, watched in waits if not held)  # and watches it otherwise
