"""C-FIND SCP against dcmtk findscu: every level, both roots, the matching kinds, bad input."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dicomgate.dicom.nodes import RemoteNode
from dicomgate.dicom.politeness import Politeness, SystemClock
from dicomgate.dicom.query import QueryLevel
from dicomgate.dicom.remote import RemoteNodeClient
from dicomgate.errors import RemoteNodeError
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.integration.dimse.conftest import AE_TITLE, serve
from tests.integration.dimse.corpus import Corpus
from tests.integration.dimse.dcmtk import findscu


def _values(responses: list, keyword: str) -> list[str]:
    return sorted(str(r.get(keyword, "")) for r in responses)


def test_study_level_wildcard_returns_requested_keys_from_the_index(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    done, found = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="STUDY",
        PatientID="PID00?",
        PatientName="",
        StudyInstanceUID="",
        StudyDate="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="",
        RetrieveAETitle="",
        InstitutionName="",  # not in the index: returned zero-length
    )
    assert done.returncode == 0, done.stderr
    assert _values(found, "StudyInstanceUID") == sorted([*corpus.studies, corpus.jpeg_study])
    first = next(r for r in found if r.StudyInstanceUID == corpus.studies[0])
    assert first.PatientName == "DOE^JANE" and first.StudyDate == "20240115"
    assert list(first.ModalitiesInStudy) == ["CT", "MR"]
    assert (first.NumberOfStudyRelatedSeries, first.NumberOfStudyRelatedInstances) == (2, 5)
    assert first.RetrieveAETitle == "DGTEST" and first.QueryRetrieveLevel == "STUDY"
    assert "InstitutionName" in first and first.InstitutionName == ""


def test_date_range_uid_list_and_modality(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    _, in_2024 = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="STUDY",
        StudyDate="20240101-",
        StudyInstanceUID="",
    )
    assert _values(in_2024, "StudyInstanceUID") == sorted([corpus.studies[0], corpus.studies[2]])
    _, up_to = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="STUDY",
        StudyDate="-20231231",
        StudyInstanceUID="",
    )
    assert _values(up_to, "StudyInstanceUID") == sorted([corpus.studies[1], corpus.jpeg_study])
    listed = "\\".join(corpus.studies[1:])
    _, by_list = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", StudyInstanceUID=listed)
    assert _values(by_list, "StudyInstanceUID") == sorted(corpus.studies[1:])
    _, mr = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="STUDY",
        ModalitiesInStudy="MR",
        AccessionNumber="",
    )
    assert _values(mr, "StudyInstanceUID") == sorted([corpus.studies[0], corpus.studies[2]])


def test_universal_matching_returns_every_study(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    _, found = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    assert _values(found, "StudyInstanceUID") == sorted([*corpus.studies, corpus.jpeg_study])


def test_patient_root_patient_level(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    done, found = findscu(
        qr_scp.port,
        tmp_path,
        "-P",
        QueryRetrieveLevel="PATIENT",
        PatientName="*E^*",
        PatientID="",
        NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedInstances="",
    )
    assert done.returncode == 0, done.stderr
    by_id = {r.PatientID: r for r in found}
    assert sorted(by_id) == ["PID001", "PID002"]
    assert by_id["PID001"].NumberOfPatientRelatedStudies == 2
    assert by_id["PID001"].NumberOfPatientRelatedInstances == 6


def test_patient_root_study_level_under_a_patient(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    _, found = findscu(
        qr_scp.port,
        tmp_path,
        "-P",
        QueryRetrieveLevel="STUDY",
        PatientID="PID002",
        StudyInstanceUID="",
    )
    assert _values(found, "StudyInstanceUID") == [corpus.studies[2]]


def test_series_level(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.studies[0]
    _, found = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="SERIES",
        StudyInstanceUID=study,
        SeriesInstanceUID="",
        Modality="",
        SeriesNumber="",
        NumberOfSeriesRelatedInstances="",
    )
    assert [(r.Modality, r.SeriesNumber, r.NumberOfSeriesRelatedInstances) for r in found] == [
        ("CT", 1, 3),
        ("MR", 2, 2),
    ]
    assert [r.SeriesInstanceUID for r in found] == corpus.series[study]
    _, ct_only = findscu(
        qr_scp.port, tmp_path, QueryRetrieveLevel="SERIES", Modality="CT", SeriesInstanceUID=""
    )
    assert len(ct_only) == 2


def test_image_level(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    series = corpus.series[corpus.studies[0]][0]
    _, found = findscu(
        qr_scp.port,
        tmp_path,
        "-P",
        QueryRetrieveLevel="IMAGE",
        PatientID="PID001",
        SeriesInstanceUID=series,
        SOPInstanceUID="",
        SOPClassUID="",
        InstanceNumber="",
        Rows="",
    )
    assert [r.SOPInstanceUID for r in found] == corpus.instances[series]
    assert [r.InstanceNumber for r in found] == [1, 2, 3]
    assert all(r.Rows == 128 and r.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" for r in found)
    _, one = findscu(
        qr_scp.port,
        tmp_path,
        QueryRetrieveLevel="IMAGE",
        InstanceNumber="2",
        SeriesInstanceUID=series,
    )
    assert len(one) == 1


def test_nothing_matches(qr_scp: Receiver, corpus: Corpus, tmp_path: Path) -> None:
    done, found = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID="NOBODY")
    assert done.returncode == 0 and found == []


def test_malformed_identifiers_are_refused_with_a900(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    bad = [
        {"QueryRetrieveLevel": "STUDY", "StudyDate": "20241399"},
        {"QueryRetrieveLevel": "STUDY", "StudyDate": "20240301-20240101"},
        {"QueryRetrieveLevel": "STUDY", "StudyTime": "25xx"},
        {"QueryRetrieveLevel": "SERIES", "SeriesNumber": "one"},
        {"QueryRetrieveLevel": "VOLUME", "PatientID": ""},
        {"QueryRetrieveLevel": "PATIENT", "PatientID": ""},  # no PATIENT level in Study Root
        {"PatientID": "PID001"},  # no level at all
    ]
    for values in bad:
        done, found = findscu(qr_scp.port, tmp_path, **values)
        assert found == [], values
        assert "Error: DataSetDoesNotMatchSOPClass" in done.stderr, (values, done.stderr)
    _, still = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID="PID002")
    assert len(still) == 1


def test_sql_like_and_quoted_values_match_literally(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    for value in ["' OR '1'='1", "PID%", "PID_01", 'x"; DROP TABLE studies; --', "[P]ID*"]:
        done, found = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID=value)
        assert done.returncode == 0 and found == [], value
    _, all_studies = findscu(qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID="*")
    assert len(all_studies) == 4


def test_too_many_matches_refused_with_a700(intake: Intake, corpus: Corpus, tmp_path: Path) -> None:
    server = serve(intake, max_find_results=2)
    try:
        done, found = findscu(
            server.port, tmp_path, QueryRetrieveLevel="STUDY", StudyInstanceUID=""
        )
        assert found == [] and "OutOfResources" in done.stderr, done.stderr
        _, two = findscu(server.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID="PID001")
        assert len(two) == 2
    finally:
        server.stop()


def _client(port: int, timeout: float = 30.0) -> RemoteNodeClient:
    node = RemoteNode(
        name="archive", ae_title=AE_TITLE, host="127.0.0.1", port=port, max_requests_per_minute=600
    )
    return RemoteNodeClient(node, "PACSCLIENT", Politeness(node, SystemClock()), timeout)


def test_our_pacs_client_reads_rows_and_refusals_from_our_archive(
    qr_scp: Receiver, corpus: Corpus, tmp_path: Path
) -> None:
    # The client's lean response reading (dicom/responses.py) against a second real peer.
    client = _client(qr_scp.port)
    rows = client.find(QueryLevel.STUDY, {"PatientID": "PID*"}, ["PatientName", "StudyDate"])
    _, by_dcmtk = findscu(
        qr_scp.port, tmp_path, QueryRetrieveLevel="STUDY", PatientID="PID*", PatientName=""
    )
    assert sorted(row["PatientName"] for row in rows) == _values(by_dcmtk, "PatientName")
    assert len(rows) == 4
    started = time.monotonic()
    with pytest.raises(RemoteNodeError, match="C-FIND status 0xA900"):
        client.find(QueryLevel.STUDY, {"StudyDate": "20240301-20240101"})
    # The association was released at once, not after the client's 30 s timeout.
    assert time.monotonic() - started < 20
    assert len(client.find(QueryLevel.STUDY, {"PatientID": "PID002"})) == 1
