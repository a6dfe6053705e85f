"""Fixtures for the de-identification tests: profiles and keys."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from deid_builders import SECRET_A

from dicomgate.deid import DeidKeys, Profile, load_profile


@pytest.fixture
def basic() -> Profile:
    return load_profile({})


@pytest.fixture
def keys() -> DeidKeys:
    return DeidKeys(uid_secret=SECRET_A, subject_id="SUBJ-0001", date_offset_days=-10)


@pytest.fixture
def make_profile() -> Callable[..., Profile]:
    def make(**values: object) -> Profile:
        return load_profile(values)

    return make
