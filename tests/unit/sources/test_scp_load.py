"""The receiving processes' shared association counts (``sources.scp.Load``)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest

from dicomgate.sources import scp
from dicomgate.sources.scp import Load


@pytest.fixture()
def counts() -> list[int]:
    return multiprocessing.Array("i", 2, lock=False)  # type: ignore[return-value]


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The time ``Load`` sees, moved by the test."""
    now = [100.0]
    monkeypatch.setattr(scp.time, "monotonic", lambda: now[0])
    return now


def test_the_least_loaded_process_takes_the_next_association(counts: list[int]) -> None:
    first, second = Load(counts, 0), Load(counts, 1)
    first.add(+1)
    assert second.my_turn()
    assert not first.my_turn()  # it waits for the other, for a moment at most


def test_a_waiting_process_takes_its_turn_after_its_patience(
    counts: list[int], clock: list[float]
) -> None:
    busy = Load(counts, 0)
    busy.add(+1)
    assert not busy.my_turn()
    clock[0] += Load._PATIENCE + 0.01
    assert busy.my_turn()


def test_resync_corrects_a_steady_count_only(counts: list[int], clock: list[float]) -> None:
    load = Load(counts, 0)
    load.add(+1)
    load.add(+1)
    load.resync(0)  # just changed: the new association may not be alive yet
    assert counts[0] == 2
    clock[0] += 1.5
    load.resync(1)  # a connection ended without its close event
    assert counts[0] == 1


class _Counts(list[int]):
    """Shared counts that can run something just before a slot is written."""

    before_write: Callable[[], None] | None = None

    def __setitem__(self, index: Any, value: Any) -> None:
        hook, self.before_write = self.before_write, None
        if hook is not None:
            hook()
        super().__setitem__(index, value)


def test_an_association_starting_during_a_resync_is_not_lost(clock: list[float]) -> None:
    counts = _Counts([0, 0])
    load = Load(counts, 0)
    load.add(+1)
    clock[0] += 1.5
    starter = threading.Thread(target=load.add, args=(+1,))

    def start_one() -> None:  # an association starts as resync writes its count
        starter.start()
        starter.join(0.2)

    counts.before_write = start_one
    load.resync(1)  # the one association alive when the caller counted
    starter.join()
    assert counts[0] == 2
