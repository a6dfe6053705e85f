"""DIMSE command sets encoded by hand (group 0000, always implicit VR little endian, PS3.7 6.3).

A command set is a handful of elements; building one here costs microseconds, where pynetdicom
goes through a pydicom Dataset and its writer. Used for the messages sent many times a second:
C-STORE requests and pending responses of a retrieve, and the receiver's C-STORE responses.
"""

from __future__ import annotations

import struct


def element(tag: int, value: bytes) -> bytes:
    """Encode one command element (group 0000) with its value."""
    return struct.pack("<HHI", 0x0000, tag, len(value)) + value


def text(value: str, pad: bytes) -> bytes:
    """Encode a text value padded to an even length (UI with NUL, other VRs with a space)."""
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def us(value: int) -> bytes:
    """Encode an unsigned short."""
    return struct.pack("<H", value)


def command(elements: list[bytes]) -> bytes:
    """Return the command set of ``elements`` (in tag order) with its group length first."""
    body = b"".join(elements)
    return element(0x0000, struct.pack("<I", len(body))) + body
