from __future__ import annotations

from typing import Any

import pytest
from deid_builders import ct_slice

from dicomgate.deid.errors import IdentityError
from dicomgate.deid.identity import (
    IDENTITY_MISMATCH,
    IdentityDifference,
    check_session_identity,
    confirmed_identity,
    header_identity,
    identity_differences,
    mismatch_reason,
)
from dicomgate.deid.pseudonyms import Identity

CONFIRMED = {"first_name": "Zqxjohn", "last_name": "zqxdoe", "birth_date": "1960-02-15"}


def test_confirmed_identity_normalises_date_and_sex() -> None:
    identity = confirmed_identity({**CONFIRMED, "sex": "m"})
    assert identity.birth_date == "19600215"
    assert identity.sex == "M"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**CONFIRMED, "nickname": "J"}, "identity.nickname"),
        ({**CONFIRMED, "birth_date": "1960-02-30"}, "identity.birth_date"),
        ({**CONFIRMED, "birth_date": "15/02/1960"}, "identity.birth_date"),
        ({**CONFIRMED, "sex": "X"}, "identity.sex"),
        ({**CONFIRMED, "last_name": 42}, "identity.last_name"),
        ({**CONFIRMED, "first_name": "a\\b"}, "identity.first_name"),
        ({"birth_date": "19600215"}, "identity.last_name"),
    ],
)
def test_malformed_confirmed_identity_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(IdentityError, match=field):
        confirmed_identity(data)


def test_matching_headers_give_no_difference() -> None:
    confirmed = confirmed_identity({**CONFIRMED, "sex": "M"})
    assert identity_differences(confirmed, header_identity(ct_slice(0))) == []


def test_mismatch_keeps_both_values() -> None:
    confirmed = confirmed_identity({**CONFIRMED, "birth_date": "19600216", "sex": "F"})
    differences = identity_differences(confirmed, header_identity(ct_slice(0)))
    assert differences == [
        IdentityDifference("birth_date", "19600216", "19600215"),
        IdentityDifference("sex", "F", "M"),
    ]
    reason = mismatch_reason(differences)
    assert reason["code"] == IDENTITY_MISMATCH
    assert reason["details"]["fields"][0] == {
        "field": "birth_date",
        "confirmed": "19600216",
        "headers": "19600215",
    }
    assert "19600215" not in reason["message"]  # the message is loggable; values are not


def test_field_missing_from_headers_is_a_difference() -> None:
    confirmed = Identity(first_name="", last_name="ZQXDOE", birth_name="ZQXSMITH")
    assert identity_differences(confirmed, header_identity(ct_slice(0))) == [
        IdentityDifference("birth_name", "ZQXSMITH", "")
    ]


def test_session_check_reports_each_distinct_header_identity_once() -> None:
    other = ct_slice(2)
    other.PatientName = "ZQXROE^ZQXJANE"
    confirmed = confirmed_identity(CONFIRMED)
    found = check_session_identity(confirmed, [ct_slice(0), ct_slice(1), other, ct_slice(3)])
    assert found == [
        IdentityDifference("first_name", "Zqxjohn", "ZQXJANE"),
        IdentityDifference("last_name", "zqxdoe", "ZQXROE"),
    ]
