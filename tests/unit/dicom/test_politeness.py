"""Time windows (crossing midnight, days of week), next opening, the rate limit."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from pydantic import ValidationError
from tests.fake_clock import FakeClock

from dicomgate.dicom.nodes import PacsSettings, RemoteNode, TimeWindow, parse_clock_time
from dicomgate.dicom.politeness import Politeness, RateLimiter, is_open, next_opening

NIGHT = TimeWindow(start="20:00", end="08:00")
# 2026-12-04 is a Friday.
FRI = dt.date(2026, 12, 4)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(19, 59, False), (20, 0, True), (23, 59, True), (0, 0, True), (7, 59, True), (8, 0, False)],
)
def test_window_crossing_midnight(hour: int, minute: int, expected: bool) -> None:
    assert is_open([NIGHT], at(FRI, hour, minute)) is expected


def test_days_are_the_days_a_window_opens_on() -> None:
    weekdays = TimeWindow(start="20:00", end="08:00", days=["mon", "tue", "wed", "thu", "fri"])
    saturday = FRI + dt.timedelta(days=1)
    assert is_open([weekdays], at(saturday, 7))  # Friday night's window, still open
    assert not is_open([weekdays], at(saturday, 21))  # no window opens on Saturday
    sunday = FRI + dt.timedelta(days=2)
    assert not is_open([weekdays], at(sunday, 23))
    assert next_opening([weekdays], at(saturday, 9)) == at(FRI + dt.timedelta(days=3), 20)


def test_daytime_window_and_no_window() -> None:
    day = TimeWindow(start="09:30", end="12:00")
    assert is_open([day], at(FRI, 10)) and not is_open([day], at(FRI, 12))
    assert is_open([], at(FRI, 3))
    assert next_opening([day], at(FRI, 13)) == at(FRI + dt.timedelta(days=1), 9, 30)
    assert next_opening([day], at(FRI, 10)) == at(FRI, 10)


def test_window_in_a_time_zone() -> None:
    # 20:00-08:00 in Paris (UTC+1 in December) opens at 19:00 UTC.
    assert is_open([NIGHT], at(FRI, 19, 30), "Europe/Paris")
    assert not is_open([NIGHT], at(FRI, 19, 30), "UTC")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20:00", dt.time(20)),
        ("7", dt.time(7)),
        (1200, dt.time(20)),
        ("06:30:15", dt.time(6, 30, 15)),
    ],
)
def test_clock_times(value: object, expected: dt.time) -> None:
    assert parse_clock_time(value) == expected


def test_unquoted_yaml_time_is_read_as_minutes() -> None:
    data = yaml.safe_load("start: 20:00\nend: 06:00\n")
    assert data == {"start": 1200, "end": "06:00"}  # YAML 1.1 base 60; a leading 0 stays text
    window = TimeWindow.model_validate(data)
    assert (window.start, window.end) == (dt.time(20), dt.time(6))


@pytest.mark.parametrize(
    "bad",
    [
        {"start": "25:00", "end": "08:00"},
        {"start": "20:00", "end": "20:00"},
        {"start": "20:00", "end": "08:00", "days": ["funday"]},
        {"start": True, "end": "08:00"},
        {"start": 2000, "end": "08:00"},
        {"start": "20:00", "end": "08:00", "extra": 1},
    ],
)
def test_bad_windows_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TimeWindow.model_validate(bad)


def test_bad_nodes_are_refused_naming_the_key() -> None:
    node = {"name": "pacs", "ae_title": "PACS", "host": "h", "port": 104}
    with pytest.raises(ValidationError, match="nodes"):
        PacsSettings.model_validate({"nodes": [node, node]})
    with pytest.raises(ValidationError, match="timezone"):
        RemoteNode.model_validate({**node, "timezone": "Mars/Olympus"})
    with pytest.raises(ValidationError, match="retrieve_method"):
        RemoteNode.model_validate({**node, "retrieve_method": "ftp"})


def test_rate_limit_waits_for_the_oldest_request_to_leave_the_minute() -> None:
    clock = FakeClock(at(FRI, 12))
    limiter = RateLimiter(3, clock)
    for _ in range(3):
        limiter.acquire()
    assert clock.slept == []
    clock.sleep(10)
    limiter.acquire()  # the 4th waits until the first is 60 s old
    assert clock.slept == [10, 50]
    limiter.acquire()
    limiter.acquire()
    assert limiter.delay() == pytest.approx(60.0)  # three in the last minute: the next waits


def test_politeness_follows_the_injected_clock() -> None:
    clock = FakeClock(at(FRI, 12))
    node = RemoteNode(name="n", ae_title="N", host="h", port=1, windows=[NIGHT])
    rules = Politeness(node, clock)
    assert not rules.is_open()
    assert rules.next_opening() == at(FRI, 20)
    clock.set(at(FRI, 21))
    assert rules.is_open()
