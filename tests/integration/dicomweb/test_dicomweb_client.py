"""dicomweb-client (PyPI) against a real dicomgate: search, retrieve, metadata, frames, store."""

from __future__ import annotations

import hashlib
from io import BytesIO

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from requests.exceptions import HTTPError

from tests.integration.dicomweb.conftest import Gate, ct_copy, multipart_parts, pydicom_file


def _client(gate: Gate) -> DICOMwebClient:
    return DICOMwebClient(url=gate.dicomweb)


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(BytesIO(data))
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _value(result: dict[str, dict[str, list[str]]], tag: str) -> str:
    return result[tag]["Value"][0]


def test_search_at_every_level_with_filters(gate: Gate) -> None:
    study = generate_uid()
    series = generate_uid()
    first = ct_copy("PAT-A", "20210305", study=study, series=series, InstanceNumber=1)
    second = ct_copy("PAT-A", "20210305", study=study, series=series, InstanceNumber=2)
    other = ct_copy("PAT-B", "20190101")
    for data in (first, second, other):
        gate.store(data)
    gate.store(pydicom_file("MR_small.dcm"))
    client = _client(gate)

    found = client.search_for_studies(search_filters={"PatientID": "PAT-A"})
    assert [_value(r, "0020000D") for r in found] == [study]
    assert found[0]["00201208"]["Value"] == [2]  # NumberOfStudyRelatedInstances
    ranged = client.search_for_studies(search_filters={"StudyDate": "20200101-20211231"})
    assert [_value(r, "0020000D") for r in ranged] == [study]
    wild = client.search_for_studies(search_filters={"PatientID": "PAT-*"})
    assert len(wild) == 2
    mr = client.search_for_series(search_filters={"Modality": "MR"})
    assert [_value(r, "00080060") for r in mr] == ["MR"]
    in_study = client.search_for_series(study_instance_uid=study)
    assert [_value(r, "0020000E") for r in in_study] == [series]
    instances = client.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    assert sorted(r["00200013"]["Value"][0] for r in instances) == [1, 2]
    by_uid = client.search_for_instances(search_filters={"SOPInstanceUID": _uids(second)[2]})
    assert [_value(r, "00080018") for r in by_uid] == [_uids(second)[2]]
    paged = client.search_for_instances(limit=1, offset=1)
    assert len(paged) == 1
    included = client.search_for_studies(
        fields=["StudyDescription"], search_filters={"PatientID": "PAT-B"}
    )
    assert "00081030" in included[0]


def test_retrieve_is_byte_identical_at_every_level(gate: Gate) -> None:
    data = pydicom_file("JPEG2000.dcm")
    gate.store(data)
    study, series, sop = _uids(data)
    client = _client(gate)
    stored = gate.intake.blobs.read(_blob_key(gate, sop))
    ds = client.retrieve_instance(study, series, sop, media_types=(("application/dicom", "*"),))
    original = pydicom.dcmread(BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    # The parts as sent, before pydicom decodes them: the stored file, byte for byte.
    response = gate.http.get(
        f"/studies/{study}/series/{series}/instances/{sop}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    raw = [
        content
        for _headers, content in multipart_parts(response.headers["content-type"], response.content)
    ]
    assert [hashlib.sha256(p).hexdigest() for p in raw] == [hashlib.sha256(stored).hexdigest()]
    assert stored[128:] == data[128:]
    assert (
        len(client.retrieve_series(study, series, media_types=(("application/dicom", "*"),))) == 1
    )
    assert len(client.retrieve_study(study, media_types=(("application/dicom", "*"),))) == 1


def _blob_key(gate: Gate, sop: str) -> str:
    from sqlalchemy import select

    from dicomgate.archive.models import Instance

    with gate.intake.db.reader() as session:
        return str(
            session.scalar(select(Instance.blob_key).where(Instance.sop_instance_uid == sop))
        )


def test_retrieve_transcodes_to_explicit_little_endian_when_asked(gate: Gate) -> None:
    data = pydicom_file("JPEG2000.dcm")
    gate.store(data)
    study, series, sop = _uids(data)
    client = _client(gate)
    ds = client.retrieve_instance(
        study, series, sop, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)
    )
    assert str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.1"
    original = pydicom.dcmread(BytesIO(data))
    assert np.array_equal(ds.pixel_array, original.pixel_array)


def test_metadata_frames_bulkdata_rendered(gate: Gate) -> None:
    data = pydicom_file("CT_small.dcm")
    gate.store(data)
    study, series, sop = _uids(data)
    client = _client(gate)
    meta = client.retrieve_instance_metadata(study, series, sop)
    original = pydicom.dcmread(BytesIO(data))
    assert meta["00100010"]["Value"][0]["Alphabetic"] == str(original.PatientName)
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.startswith(gate.dicomweb)
    assert len(client.retrieve_study_metadata(study)) == 1
    assert len(client.retrieve_series_metadata(study, series)) == 1
    frames = client.retrieve_instance_frames(
        study, series, sop, [1], media_types=("application/octet-stream",)
    )
    assert frames == [original.PixelData]
    bulk = client.retrieve_bulkdata(uri, media_types=("application/octet-stream",))
    assert bulk == [original.PixelData]
    jpeg = client.retrieve_instance_rendered(study, series, sop, media_types=("image/jpeg",))
    assert jpeg[:2] == b"\xff\xd8"
    png = client.retrieve_instance_frames_rendered(
        study, series, sop, [1], media_types=("image/png",), params={"viewport": "32,32"}
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_frames_of_a_compressed_instance_as_stored(gate: Gate) -> None:
    data = pydicom_file("JPEG2000.dcm")
    gate.store(data)
    study, series, sop = _uids(data)
    original = pydicom.dcmread(BytesIO(data))
    syntax = str(original.file_meta.TransferSyntaxUID)
    frames = _client(gate).retrieve_instance_frames(
        study, series, sop, [1], media_types=(("image/jp2", syntax),)
    )
    expected = next(pydicom.encaps.generate_frames(original.PixelData, number_of_frames=1))
    assert frames == [expected]


def test_store_then_retrieve(gate: Gate) -> None:
    datasets = [pydicom.dcmread(BytesIO(ct_copy("PAT-STOW"))) for _ in range(3)]
    client = _client(gate)
    response = client.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in response
    found = client.search_for_studies(search_filters={"PatientID": "PAT-STOW"})
    assert len(found) == 3
    for ds in datasets:
        back = client.retrieve_instance(
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
            media_types=(("application/dicom", "*"),),
        )
        assert back == ds


def test_unknown_study_is_not_found(gate: Gate) -> None:
    with pytest.raises(HTTPError) as info:
        _client(gate).retrieve_study_metadata("1.2.3.4")
    assert info.value.response.status_code == 404
