"""Which STOW-RS requests the lane takes (``match_stow``, ``project_of``); the rest: the routes."""

from __future__ import annotations

import pytest
from fastapi import Request
from tests.unit.dicomweb.lane_paths import NOT_A_RESOURCE

from dicomgate.access.dicomweb.stow_lane import match_stow, project_of


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/studies", (None,)),
        ("/studies/1.2.3", ("1.2.3",)),
        ("/studies/not-a-uid", ("not-a-uid",)),  # refused by the store: 400
        ("/studies/" + "1" * 64, ("1" * 64,)),
    ],
)
def test_stow_targets(path: str, expected: tuple[str | None]) -> None:
    assert match_stow(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        *NOT_A_RESOURCE,
        "/studies/" + "1" * 65,  # the routes answer 400
        "/studies/1.2/series",
        "/studies/1.2/instances",
        "/series",
        "/instances",
    ],
)
def test_other_paths_are_left_to_the_routes(path: str) -> None:
    assert match_stow(path) is None


def _request(query: bytes) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "query_string": query})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", (None,)),
        (b"project=LUNG", ("LUNG",)),
        (b"project=", ("",)),  # the routes pass it on as given too
        (b"other=1&project=A%20B", ("A B",)),
        (b"project=" + b"P" * 64, ("P" * 64,)),
    ],
)
def test_the_project_is_read_as_the_routes_read_it(
    query: bytes, expected: tuple[str | None]
) -> None:
    assert project_of(_request(query)) == expected


@pytest.mark.parametrize("query", [b"project=A&project=B", b"project=" + b"P" * 65])
def test_a_project_the_routes_must_judge_is_left_to_them(query: bytes) -> None:
    assert project_of(_request(query)) is None
