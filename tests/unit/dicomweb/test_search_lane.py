"""Which paths the search lane takes (``match_search``); the rest go to the routes."""

from __future__ import annotations

import pytest
from tests.unit.dicomweb.lane_paths import NOT_A_RESOURCE

from dicomgate.access.dicomweb.attributes import Level
from dicomgate.access.dicomweb.search_lane import match_search, path_below


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/studies", (Level.STUDY, [])),
        ("/series", (Level.SERIES, [])),
        ("/instances", (Level.INSTANCE, [])),
        ("/studies/1.2/series", (Level.SERIES, ["1.2"])),
        ("/studies/1.2/instances", (Level.INSTANCE, ["1.2"])),
        ("/studies/1.2/series/3.4/instances", (Level.INSTANCE, ["1.2", "3.4"])),
        ("/studies/not-a-uid/series", (Level.SERIES, ["not-a-uid"])),  # refused later: 400
    ],
)
def test_search_paths(path: str, expected: tuple[Level, list[str]]) -> None:
    assert match_search(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        *NOT_A_RESOURCE,
        "/studies//series",
        "/studies/1.2",  # WADO-RS
        "/studies/1.2/metadata",
        "/studies/1.2/series/3.4",
        "/studies/1.2/series/3.4/instances/5.6",
        "/studies/1.2/series/3.4/metadata",
        "/series/3.4/instances",  # not a DICOMweb resource
        "/patients",
    ],
)
def test_other_paths_are_not_searches(path: str) -> None:
    assert match_search(path) is None


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"type": "http", "method": "GET", "path": "/dicomweb/studies"}, "/studies"),
        ({"type": "http", "method": "GET", "path": "/pacs/dicomweb/x", "root_path": "/pacs"}, "/x"),
        ({"type": "http", "method": "POST", "path": "/dicomweb/studies"}, None),
        ({"type": "http", "method": "GET", "path": "/api/jobs"}, None),
        ({"type": "websocket", "path": "/dicomweb/studies"}, None),
    ],
)
def test_the_path_below_the_mount(scope: dict[str, str], expected: str | None) -> None:
    assert path_below(scope, "GET", "/dicomweb") == expected
