"""Sockets numbered above select()'s ceiling are watched, and associations on them work."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from tests.conftest import HIGH_DESCRIPTOR

from dicomgate.dicom.reactor import RequestorAE
from dicomgate.dicom.readiness import wait_readable


@pytest.fixture()
def high_pair(high_descriptors: None) -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    with left, right:
        yield left, right


def test_a_socket_above_1024_is_watched(high_pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = high_pair
    assert left.fileno() >= HIGH_DESCRIPTOR
    with pytest.raises(ValueError):  # what this module is for
        select.select([left], [], [], 0)
    assert wait_readable([left, right], 0) == []
    right.send(b"x")
    assert wait_readable([left, right], 1) == [left]


def test_a_closed_peer_reads_as_readable(high_pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = high_pair
    right.close()
    assert wait_readable([left], 1) == [left]  # the read then reports the close


def test_a_closed_socket_is_an_error() -> None:
    left, right = socket.socketpair()
    right.close()
    left.close()
    with pytest.raises(OSError, match="closed"):
        wait_readable([left], 0)


def test_associations_work_on_descriptors_above_1024(
    high_descriptors: None, echo_port: int
) -> None:
    # Before: pynetdicom's select() raised, which it took for a closed connection.
    ae = RequestorAE(ae_title="DICOMGATE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", echo_port, ae_title="ECHOSCP")
    try:
        assert assoc.is_established
        assert assoc.dul.socket is not None
        assert assoc.dul.socket.socket.fileno() >= HIGH_DESCRIPTOR  # type: ignore[union-attr]
        for _ in range(5):
            assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
