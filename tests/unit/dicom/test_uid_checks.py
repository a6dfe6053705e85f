"""UID checks remembered (``dicom/uid_checks.py``) decide exactly what the checks decided."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import config, valuerep
from pydicom.uid import UID
from pynetdicom import _config
from pynetdicom._validators import validate_ui
from pynetdicom.utils import set_uid

from dicomgate.dicom import uid_checks

VALID = "1.2.840.10008.5.1.4.1.1.2"
NON_CONFORMANT = "1.02.840.10008"  # a component with a leading zero
TOO_LONG = "1." + "2" * 70


@pytest.fixture()
def enforce_conformance() -> Iterator[None]:
    before = _config.ENFORCE_UID_CONFORMANCE
    yield
    _config.ENFORCE_UID_CONFORMANCE = before


def _installed_pydicom_check() -> uid_checks.RememberedCheck:
    check = valuerep.VALIDATORS["UI"]
    assert isinstance(check, uid_checks.RememberedCheck)
    return check


def test_installed_once_in_place_of_the_libraries_checks() -> None:
    pydicom_check = valuerep.VALIDATORS["UI"]
    pynetdicom_check = _config.VALIDATORS["UI"]
    assert isinstance(pydicom_check, uid_checks.RememberedCheck)
    assert pydicom_check.__wrapped__ is valuerep.validate_length_and_type_and_regex
    uid_checks._install()
    assert valuerep.VALIDATORS["UI"] is pydicom_check
    assert _config.VALIDATORS["UI"] is pynetdicom_check


@pytest.mark.parametrize("uid", [VALID, NON_CONFORMANT, TOO_LONG, "1.2.abc", ""])
def test_remembered_answers_are_the_checks_answers(uid: str) -> None:
    pydicom_check = _installed_pydicom_check()
    for _ in range(2):  # the second answer comes from the cache
        assert pydicom_check("UI", uid) == valuerep.validate_length_and_type_and_regex("UI", uid)
        assert UID(uid).is_valid == (uid == VALID)


def test_an_invalid_uid_is_still_warned_about_and_refused_every_time() -> None:
    for _ in range(2):
        with pytest.warns(UserWarning, match="Invalid value for VR UI"):
            UID("1.2.abc")
        with pytest.raises(ValueError, match="Invalid value for VR UI"):
            UID("1.2.abc", validation_mode=config.RAISE)


def test_pynetdicom_conformance_switch_is_read_at_each_check(enforce_conformance: None) -> None:
    for _ in range(2):
        _config.ENFORCE_UID_CONFORMANCE = True
        with pytest.raises(ValueError, match="non-conformant"):
            set_uid(NON_CONFORMANT, "Abstract Syntax Name")
        _config.ENFORCE_UID_CONFORMANCE = False
        assert set_uid(NON_CONFORMANT, "Abstract Syntax Name") == NON_CONFORMANT


def test_values_that_cannot_be_remembered_are_checked_as_before() -> None:
    values = [VALID, "1.2.abc"]  # a list: not a cache key
    expected = valuerep.validate_length_and_type_and_regex("UI", values)
    assert _installed_pydicom_check()("UI", values) == expected
    assert _config.VALIDATORS["UI"](values) == (False, "must be pydicom.uid.UID")


def test_the_caches_are_bounded() -> None:
    # Every instance brings new SOP Instance UIDs: the caches must not grow with them.
    check = uid_checks.RememberedCheck(valuerep.validate_length_and_type_and_regex)
    netcheck = uid_checks.RememberedCheck(validate_ui, uid_checks.conformance_switch)
    for index in range(uid_checks.CACHED + 100):
        assert check("UI", f"1.2.3.{index}") == (True, "")
        assert netcheck(UID(f"1.2.3.{index}")) == (True, "")
    assert check.cache_info().currsize == uid_checks.CACHED
    assert netcheck.cache_info().currsize == uid_checks.CACHED
