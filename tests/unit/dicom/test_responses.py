"""Responses to our own requests (``dicom.responses``): rows as pydicom reads them, endings kept.

Finds, gets and moves against real peers (Orthanc, dcmtk) are in ``tests/integration``;
here the identifiers and the ends of the response streams are fed in directly.
"""

from __future__ import annotations

import threading
from collections import deque
from io import BytesIO
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import decode, encode

from dicomgate.dicom import responses
from dicomgate.dicom.query import result_dict
from dicomgate.dicom.responses import identifier_row

IMPLICIT, EXPLICIT = UID("1.2.840.10008.1.2"), UID("1.2.840.10008.1.2.1")
COLUMNS = (
    "StudyInstanceUID",
    "SOPInstanceUID",
    "PatientName",
    "ModalitiesInStudy",
    "AccessionNumber",
)


def _identifier(**values: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _bytes(ds: Dataset, syntax: UID) -> BytesIO:
    raw = encode(ds, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    assert raw is not None
    return BytesIO(raw)


def _pydicom_row(data: BytesIO, syntax: UID) -> dict[str, str]:
    ds = decode(
        BytesIO(data.getvalue()), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
    )
    return result_dict(ds, COLUMNS)


IDENTIFIERS = {
    "plain": _identifier(StudyInstanceUID="1.2.3", SOPInstanceUID="1.2.3.4.5", PatientName="Doe^J"),
    "odd uid padded": _identifier(StudyInstanceUID="1.2.34", SOPInstanceUID="1.2.3"),
    "multi-valued": _identifier(ModalitiesInStudy=["CT", "MR"], StudyInstanceUID="1.2"),
    "empty values": _identifier(AccessionNumber="", PatientName="", StudyInstanceUID="1.2"),
    "latin-1 name": _identifier(
        SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jörg", StudyInstanceUID="1.2"
    ),
    "utf-8 name": _identifier(
        SpecificCharacterSet="ISO_IR 192", PatientName="Łukasz^Ż", StudyInstanceUID="1.2"
    ),
    "nothing": Dataset(),
}


@pytest.mark.parametrize(
    "syntax", [IMPLICIT, EXPLICIT, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
@pytest.mark.parametrize("name", sorted(IDENTIFIERS))
def test_rows_equal_pydicoms(name: str, syntax: UID) -> None:
    data = _bytes(IDENTIFIERS[name], syntax)
    assert identifier_row(data, syntax, COLUMNS) == _pydicom_row(data, syntax)


def test_non_ascii_values_go_through_pydicom() -> None:
    data = _bytes(IDENTIFIERS["latin-1 name"], EXPLICIT)
    row = identifier_row(data, EXPLICIT, COLUMNS)
    assert row is not None and row["PatientName"] == "Müller^Jörg"


def test_absent_identifier_is_none() -> None:
    assert identifier_row(None, IMPLICIT, COLUMNS) is None


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT])
def test_cut_short_identifier_is_none_not_an_exception(syntax: UID) -> None:
    whole = _bytes(IDENTIFIERS["plain"], syntax).getvalue()
    assert identifier_row(BytesIO(whole[:-3]), syntax, COLUMNS) is None


def test_cut_short_big_endian_identifier_is_read_as_pydicom_reads_it() -> None:
    whole = _bytes(IDENTIFIERS["plain"], ExplicitVRBigEndian).getvalue()
    data = BytesIO(whole[:-3])
    assert identifier_row(data, ExplicitVRBigEndian, COLUMNS) == _pydicom_row(
        data, ExplicitVRBigEndian
    )


def test_undecodable_deflated_identifier_is_none() -> None:
    data = BytesIO(b"\x08\x00\x58\x00not deflated at all")
    assert identifier_row(data, DeflatedExplicitVRLittleEndian, COLUMNS) is None


def test_garbage_identifier_is_none() -> None:
    assert identifier_row(BytesIO(b"\x08\x00\x18\x00UI\xff\x7f1.2"), EXPLICIT, COLUMNS) is None


class _Association:
    """What the response generators use of a pynetdicom association, fed from a list."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = deque(messages)
        self._reactor_checkpoint = threading.Event()
        self.aborted = False
        self.stores: list[C_STORE] = []
        self.dimse = self

    def get_msg(self, block: bool = False) -> tuple[int | None, Any]:
        return (1, self.messages.popleft()) if self.messages else (None, None)

    def _handle_no_response(self) -> None:
        self.aborted = True

    def abort(self) -> None:
        self.aborted = True

    def _c_store_scp(self, request: C_STORE) -> None:
        self.stores.append(request)


def _find(status: int, identifier: Dataset | None = None) -> C_FIND:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo, rsp.AffectedSOPClassUID, rsp.Status = (
        1,
        "1.2.840.10008.5.1.4.1.2.2.1",
        status,
    )
    if identifier is not None:
        rsp.Identifier = _bytes(identifier, IMPLICIT)
    return rsp


def _get(kind: type[C_GET] | type[C_MOVE], status: int, **fields: Any) -> C_GET | C_MOVE:
    rsp = kind()
    rsp.MessageIDBeingRespondedTo, rsp.AffectedSOPClassUID, rsp.Status = (
        1,
        "1.2.840.10008.5.1.4.1.2.2.3",
        status,
    )
    for name, value in fields.items():
        setattr(rsp, name, value)
    return rsp


def test_find_responses_end_at_the_final_status() -> None:
    row = _identifier(StudyInstanceUID="1.2")
    assoc = _Association(
        [_find(0xFF00, row), _find(0xFF01, row), _find(0x0000), _find(0xFF00, row)]
    )
    got = list(responses._find_responses(assoc, IMPLICIT, IMPLICIT))  # type: ignore[arg-type]
    assert [code for code, _ in got] == [0xFF00, 0xFF01, 0x0000]
    assert got[0][1] is not None and got[2][1] is None
    assert assoc._reactor_checkpoint.is_set() and not assoc.aborted


def test_find_without_a_response_ends_with_none_and_aborts() -> None:
    assoc = _Association([_find(0xFF00, _identifier(StudyInstanceUID="1.2"))])
    got = list(responses._find_responses(assoc, IMPLICIT, IMPLICIT))  # type: ignore[arg-type]
    assert [code for code, _ in got] == [0xFF00, None]
    assert assoc.aborted and assoc._reactor_checkpoint.is_set()


def test_find_answered_by_another_message_aborts() -> None:
    assoc = _Association([_get(C_MOVE, 0xFF00)])
    assert list(responses._find_responses(assoc, IMPLICIT, IMPLICIT)) == [(None, None)]  # type: ignore[arg-type]
    assert assoc.aborted


def test_invalid_find_response_aborts() -> None:
    rsp = C_FIND()
    rsp.Status = 0xFF00  # no Message ID Being Responded To: not a valid response
    assoc = _Association([rsp])
    assert list(responses._find_responses(assoc, IMPLICIT, IMPLICIT)) == [(None, None)]  # type: ignore[arg-type]
    assert assoc.aborted


def test_retrieve_responses_hand_over_counts_and_failed_uids() -> None:
    failed = _identifier(FailedSOPInstanceUIDList=["1.2.3.4", "1.2.3.5"])
    final = _get(C_GET, 0xA702, NumberOfCompletedSuboperations=3, NumberOfFailedSuboperations=2)
    final.Identifier = _bytes(failed, IMPLICIT)
    store = C_STORE()
    pending = _get(
        C_GET, 0xFF00, NumberOfRemainingSuboperations=4, NumberOfCompletedSuboperations=1
    )
    assoc = _Association([pending, store, final])
    got = list(responses._retrieve_responses(assoc, IMPLICIT))  # type: ignore[arg-type]
    assert [rsp for rsp, _ in got] == [pending, final]
    assert got[0][1] is None
    identifier = got[1][1]
    assert identifier is not None and list(identifier.FailedSOPInstanceUIDList) == [
        "1.2.3.4",
        "1.2.3.5",
    ]
    assert assoc.stores == [store]  # a store pynetdicom decoded is still answered
    assert assoc._reactor_checkpoint.is_set() and not assoc.aborted


def test_retrieve_with_an_undecodable_final_identifier_keeps_the_status() -> None:
    final = _get(C_MOVE, 0xA701, NumberOfFailedSuboperations=1)
    final.Identifier = BytesIO(b"\x08\x00\x58\x00not deflated at all")
    assoc = _Association([final])
    got = list(responses._retrieve_responses(assoc, DeflatedExplicitVRLittleEndian))  # type: ignore[arg-type]
    assert got == [(final, None)]


def test_retrieve_cut_off_ends_with_none() -> None:
    assoc = _Association([_get(C_MOVE, 0xFF00, NumberOfRemainingSuboperations=2)])
    got = list(responses._retrieve_responses(assoc, IMPLICIT))  # type: ignore[arg-type]
    assert got[-1] == (None, None) and assoc.aborted


def test_the_reactor_runs_again_before_the_final_response_is_handed_over() -> None:
    row = _identifier(StudyInstanceUID="1.2")
    assoc = _Association([_find(0xFF00, row), _find(0xC000)])
    responses_ = responses._find_responses(assoc, IMPLICIT, IMPLICIT)  # type: ignore[arg-type]
    assert next(responses_)[0] == 0xFF00 and not assoc._reactor_checkpoint.is_set()
    assert next(responses_) == (0xC000, None)
    assert assoc._reactor_checkpoint.is_set()  # a caller raising now can release at once
    final = _get(C_MOVE, 0xA701, NumberOfFailedSuboperations=1)
    assoc = _Association([final])
    retrieves = responses._retrieve_responses(assoc, IMPLICIT)  # type: ignore[arg-type]
    assert next(retrieves) == (final, None) and assoc._reactor_checkpoint.is_set()
