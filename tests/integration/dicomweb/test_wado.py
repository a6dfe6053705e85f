"""WADO-RS and WADO-URI over HTTP: Accept negotiation, transcoding, frames, bulk data, images."""

from __future__ import annotations

import os
import sys
import threading
import time
from io import BytesIO

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import UID
from sqlalchemy import select

from dicomgate.access.dicomweb.metadata import MetadataFollower, follow_once, follow_when_quiet
from dicomgate.access.dicomweb.models import InstanceMetadata
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from tests.integration.dicomweb.conftest import Gate, multipart_parts, pydicom_file

DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
EXPLICIT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'


def _path(data: bytes) -> str:
    ds = pydicom.dcmread(BytesIO(data))
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _with_new_uid(data: bytes) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _parts(response: object) -> list[tuple[dict[str, str], bytes]]:
    return multipart_parts(response.headers["content-type"], response.content)  # type: ignore[attr-defined]


def test_accept_negotiation_and_406(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    implicit = pydicom_file("MR_small_implicit.dcm")
    big_endian = _with_new_uid(pydicom_file("MR_small_bigendian.dcm"))
    gate.store(implicit)
    gate.store(big_endian)
    path = _path(implicit)
    as_stored = gate.http.get(path, headers={"Accept": DICOM_ANY})
    [(headers, content)] = _parts(as_stored)
    assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2"
    assert content[128:] == implicit[128:]
    # No transfer-syntax parameter means explicit VR little endian (PS3.18 8.7.3.5.2).
    for accept in ('multipart/related; type="application/dicom"', EXPLICIT):
        [(headers, content)] = _parts(gate.http.get(path, headers={"Accept": accept}))
        ds = pydicom.dcmread(BytesIO(content))
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert np.array_equal(ds.pixel_array, pydicom.dcmread(BytesIO(implicit)).pixel_array)
    refused = [
        (path, "application/dicom+json"),
        (
            path,
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
        ),
        (path, "image/png"),
        (_path(big_endian), EXPLICIT),  # not transcoded from big endian
        (path + "/metadata", "multipart/related; type=application/dicom+xml"),
        (path + "/frames/1", 'multipart/related; type="image/jpeg"'),
        (path + "/rendered", "image/gif"),
    ]
    for url, accept in refused:
        response = gate.http.get(url, headers={"Accept": accept})
        assert response.status_code == 406, (url, accept, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert gate.http.get(_path(big_endian), headers={"Accept": DICOM_ANY}).status_code == 200


def test_metadata_is_prepared_after_commit_and_served_from_the_cache(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    data = pydicom_file("CT_small.dcm")
    gate.store(data)
    follow_once(gate.intake.db, gate.intake.blobs, 100, 1024)  # what the follower thread runs
    with gate.intake.db.reader() as session:
        [prepared] = session.scalars(select(InstanceMetadata.json)).all()
    assert "{+base}" in prepared and "7FE00010" in prepared
    gate.intake.blobs.path(_blob_key(gate)).rename(gate.intake.blobs.temp / "moved")
    meta = gate.http.get(_path(data) + "/metadata")  # the file is gone: served from the cache
    assert meta.status_code == 200
    assert meta.json()[0]["00100020"]["Value"] == [str(pydicom.dcmread(BytesIO(data)).PatientID)]


def test_metadata_waits_while_instances_keep_arriving(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    db, blobs = gate.intake.db, gate.intake.blobs
    gate.store(pydicom_file("CT_small.dcm"))
    seen, read = follow_when_quiet(db, blobs, 100, 1024, seen=-1)
    assert read == 0  # the log grew since the last look: intake is busy
    gate.store(pydicom_file("MR_small.dcm"))
    seen, read = follow_when_quiet(db, blobs, 100, 1024, seen=seen)
    assert read == 0  # still growing
    with db.reader() as session:
        assert session.scalars(select(InstanceMetadata.json)).all() == []
    seen, read = follow_when_quiet(db, blobs, 100, 1024, seen=seen)
    assert read >= 2  # quiet for a look: both are prepared in one pass
    with db.reader() as session:
        assert len(session.scalars(select(InstanceMetadata.json)).all()) == 2


def _blob_key(gate: Gate) -> str:
    from dicomgate.archive.models import Instance

    with gate.intake.db.reader() as session:
        return str(session.scalars(select(Instance.blob_key)).one())


def test_metadata_built_on_first_request_when_not_prepared(gate: Gate) -> None:
    data = pydicom_file("MR_small.dcm")
    gate.store(data)
    first = gate.http.get(_path(data) + "/metadata")
    second = gate.http.get(_path(data) + "/metadata")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    ds = pydicom.dcmread(BytesIO(data))
    assert first.json()[0]["00280010"]["Value"] == [ds.Rows]


def test_frames_and_bulkdata(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    dose = pydicom_file("rtdose.dcm")  # 15 frames, implicit VR
    gate.store(dose)
    ds = pydicom.dcmread(BytesIO(dose))
    size = ds.Rows * ds.Columns * ds.BitsAllocated // 8
    response = gate.http.get(_path(dose) + "/frames/2,15")
    frames = [content for _h, content in _parts(response)]
    assert frames == [ds.PixelData[size : 2 * size], ds.PixelData[14 * size :]]
    assert gate.http.get(_path(dose) + "/frames/16").status_code == 404
    assert gate.http.get(_path(dose) + "/frames/0").status_code == 404
    assert gate.http.get(_path(dose) + "/frames/1,x").status_code == 400
    meta = gate.http.get(_path(dose) + "/metadata").json()[0]
    bulk = gate.http.get(meta["7FE00010"]["BulkDataURI"])
    assert [c for _h, c in _parts(bulk)] == [ds.PixelData]
    assert gate.http.get(_path(dose) + "/bulkdata/00100010").status_code == 404  # not binary
    assert gate.http.get(_path(dose) + "/bulkdata/FFFF0000").status_code == 404
    assert gate.http.get(_path(dose) + "/bulkdata/3004000C/0/1").status_code == 404


def test_compressed_frames_decoded_when_asked(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    rle = pydicom_file("SC_rgb_rle.dcm")
    gate.store(rle)
    accept = 'multipart/related; type="application/octet-stream"'
    [(headers, content)] = _parts(
        gate.http.get(_path(rle) + "/frames/1", headers={"Accept": accept})
    )
    assert headers["content-type"] == "application/octet-stream"
    ds = pydicom.dcmread(BytesIO(rle))
    assert content == ds.pixel_array.tobytes()
    as_stored = gate.http.get(
        _path(rle) + "/frames/1",
        headers={"Accept": DICOM_ANY.replace("application/dicom", "image/dicom-rle")},
    )
    [(headers, content)] = _parts(as_stored)
    assert headers["content-type"].startswith("image/dicom-rle")


def test_rendered_and_thumbnails_at_every_level(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    ct = pydicom_file("CT_small.dcm")
    gate.store(ct)
    path = _path(ct)
    study, series = path.split("/instances/")[0].rsplit("/series/", 1)
    image = Image.open(BytesIO(gate.http.get(path + "/rendered").content))
    assert image.format == "JPEG" and image.size == (128, 128)
    png = gate.http.get(
        path + "/frames/1/rendered",
        params={"viewport": "64,32", "window": "40,400"},
        headers={"Accept": "image/png"},
    )
    assert Image.open(BytesIO(png.content)).size == (32, 32)
    for url in (study + "/rendered", f"{study}/series/{series}/rendered"):
        [(headers, content)] = _parts(
            gate.http.get(url, headers={"Accept": 'multipart/related; type="image/jpeg"'})
        )
        assert headers["content-type"] == "image/jpeg" and content[:2] == b"\xff\xd8"
    for url in (study, f"{study}/series/{series}", path, path + "/frames/1"):
        thumb = gate.http.get(url + "/thumbnail")
        assert thumb.status_code == 200, url
        assert max(Image.open(BytesIO(thumb.content)).size) == 128
    for params in ({"window": "40"}, {"window": "40,-1"}, {"viewport": "0,10"}, {"quality": "101"}):
        assert gate.http.get(path + "/rendered", params=params).status_code == 400
    assert gate.http.get(path + "/frames/2/rendered").status_code == 404


def test_wado_uri(sqlite_gate: Gate) -> None:
    gate = sqlite_gate
    data = pydicom_file("CT_small.dcm")
    gate.store(data)
    ds = pydicom.dcmread(BytesIO(data))
    params = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
    }
    dicom = gate.http.get("/wado", params={**params, "contentType": "application/dicom"})
    assert dicom.headers["content-type"] == "application/dicom"
    assert dicom.content[128:] == data[128:]
    jpeg = gate.http.get("/wado", params={**params, "rows": "64"})
    assert Image.open(BytesIO(jpeg.content)).size == (64, 64)
    assert gate.http.get("/wado", params={**params, "requestType": "X"}).status_code == 400
    assert gate.http.get("/wado", params={**params, "contentType": "text/html"}).status_code == 406
    assert gate.http.get("/wado", params={**params, "objectUID": "1.2.3"}).status_code == 404
    assert gate.http.get("/wado", params={"requestType": "WADO"}).status_code == 400


def test_capabilities(sqlite_gate: Gate) -> None:
    described = sqlite_gate.http.get("/")
    assert described.status_code == 200
    assert "qido-rs" in described.json()
    options = sqlite_gate.http.options("/")
    assert options.status_code == 200 and "GET" in options.headers["allow"]


def test_unknown_and_malformed_paths(sqlite_gate: Gate) -> None:
    for url in (
        "/studies/1.2.3",
        "/studies/1.2.3/metadata",
        "/studies/x.y/series/1.2",
        "/studies/1.2/series/1.3/instances/1.4/frames/1",
    ):
        assert sqlite_gate.http.get(url).status_code == 404, url


def _variant(data: bytes, number: int) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    uid = UID(f"1.2.826.0.1.3680043.10.9.{number}")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _prepared_count(intake: Intake) -> int:
    with intake.db.reader() as session:
        return len(session.scalars(select(InstanceMetadata.instance_pk)).all())


def test_the_follower_stops_when_stores_arrive_and_goes_on_later(intake: Intake) -> None:
    data = pydicom_file("CT_small.dcm")
    for number in range(45):
        assert receive(intake, _variant(data, number), Origin(OriginKind.IMPORT)).ok
    looks: list[int] = []

    def busy() -> bool:  # intake is busy again from the second look on
        looks.append(1)
        return len(looks) >= 2

    read = follow_once(intake.db, intake.blobs, 100, 1024, busy)
    assert read == 40  # two chunks of 20 changes, then it yielded
    assert _prepared_count(intake) == 40  # what it prepared is saved with its position
    assert follow_once(intake.db, intake.blobs, 100, 1024) == 5  # later: the rest, no more
    assert _prepared_count(intake) == 45
    assert follow_once(intake.db, intake.blobs, 100, 1024) == 0


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own niceness is Linux's")
def test_the_follower_thread_yields_the_cpu_to_serving(intake: Intake) -> None:
    # Background work: right after a large load it took half the CPU from retrievals.
    follower = MetadataFollower(intake.db, intake.blobs, 0.05, 10, 1024)
    follower.start()
    try:
        thread = follower._thread.native_id
        assert thread is not None
        wanted = min(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + 10, 19)
        deadline = time.monotonic() + 5  # the thread lowers it first thing, on its own
        while os.getpriority(os.PRIO_PROCESS, thread) != wanted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, thread) == wanted
    finally:
        follower.stop()
