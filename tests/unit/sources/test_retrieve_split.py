"""A retrieve's requests: one per series, the largest split to use the node's spare associations."""

from __future__ import annotations

import pytest

from dicomgate.sources.pacs import retrieve
from dicomgate.sources.pacs.retrieve import ExpectedInstance, SeriesPart, split_series


def _series(uid: str, count: int) -> list[ExpectedInstance]:
    return [
        ExpectedInstance(f"{uid}.{i}", ("1.2.840.10008.5.1.4.1.1.2",), uid, "1.2")
        for i in range(count)
    ]


def _shape(parts: list[SeriesPart]) -> list[tuple[str, int, bool]]:
    return sorted((part.series_uid, len(part.instances), part.whole) for part in parts)


def test_one_request_per_series_when_they_fill_the_associations() -> None:
    series = {"a": _series("a", 400), "b": _series("b", 300)}
    assert _shape(split_series(series, 2)) == [("a", 400, True), ("b", 300, True)]


def test_one_large_series_is_split_over_the_associations() -> None:
    instances = _series("a", 1000)
    parts = split_series({"a": instances}, 4)
    assert _shape(parts) == [("a", 250, False)] * 4
    assert [i for part in parts for i in part.instances] == instances  # each once, in order


def test_the_largest_is_split_first_and_small_series_stay_whole() -> None:
    series = {"big": _series("big", 600), "small": _series("small", 20)}
    assert _shape(split_series(series, 3)) == [
        ("big", 300, False),
        ("big", 300, False),
        ("small", 20, True),
    ]


def test_parts_are_never_smaller_than_the_minimum() -> None:
    assert _shape(split_series({"a": _series("a", 99)}, 4)) == [("a", 99, True)]
    assert _shape(split_series({"a": _series("a", 100)}, 4)) == [("a", 50, False)] * 2


def test_a_part_longer_than_a_uid_list_is_cut_into_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieve, "_RETRY_BY_UID_LIST", 100)
    parts = split_series({"a": _series("a", 500)}, 2)
    assert _shape(parts) == [("a", 50, False), ("a", 50, False)] + [("a", 100, False)] * 4


def test_nothing_to_retrieve_is_no_request() -> None:
    assert split_series({}, 4) == []
