"""Reading one PDU's bytes from a socket: ``reactor.recv_exactly``."""

from __future__ import annotations

import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from dicomgate.dicom import reactor
from dicomgate.dicom.reactor import recv_exactly


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair()
    receiver.settimeout(10)
    yield sender, receiver
    sender.close()
    receiver.close()


def _read(sock: socket.socket, length: int, head: bytes = b"") -> bytes:
    data = recv_exactly(sock, length, head)
    assert data is not None
    return bytes(data)


def _send_in_pieces(sender: socket.socket, data: bytes, piece: int, close: bool) -> None:
    for start in range(0, len(data), piece):
        sender.sendall(data[start : start + piece])
        time.sleep(0.001)
    if close:
        sender.shutdown(socket.SHUT_WR)


def test_reads_exactly_the_length_after_the_head_across_many_pieces(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    data = os.urandom(300_000)
    thread = threading.Thread(target=_send_in_pieces, args=(sender, data + b"next", 7_001, False))
    thread.start()
    try:
        assert _read(receiver, len(data), b"\x04\x00HEAD") == b"\x04\x00HEAD" + data
        assert _read(receiver, 4) == b"next"  # nothing of the next PDU was taken
    finally:
        thread.join()


def test_grows_past_the_preallocated_part(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reactor, "_PREALLOCATED", 1_000)
    sender, receiver = pair
    data = os.urandom(10_500)
    thread = threading.Thread(target=_send_in_pieces, args=(sender, data, 3_000, False))
    thread.start()
    try:
        assert _read(receiver, len(data)) == data
    finally:
        thread.join()


def test_zero_length_returns_the_head_without_reading(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    _, receiver = pair
    assert _read(receiver, 0, b"\x05\x00\x00\x00\x00\x00") == b"\x05" + bytes(5)


def test_a_peer_that_closes_mid_pdu_gives_none(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    _send_in_pieces(sender, b"x" * 100, 30, close=True)
    assert recv_exactly(receiver, 1_000) is None


def test_a_huge_announced_length_reserves_memory_only_as_bytes_arrive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    sender, receiver = pair
    _send_in_pieces(sender, b"x" * 100, 100, close=True)
    tracemalloc.start()
    try:
        assert recv_exactly(receiver, 0xFFFFFFFF) is None  # a 4 GiB PDU, then nothing
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * reactor._PREALLOCATED


def test_a_timeout_is_raised_to_the_caller(pair: tuple[socket.socket, socket.socket]) -> None:
    _, receiver = pair
    receiver.settimeout(0.05)
    with pytest.raises(TimeoutError):
        recv_exactly(receiver, 10)
