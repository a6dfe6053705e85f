"""Walk the element headers of an encoded dataset to prove it is complete, without decoding values.

pydicom reads headers lazily and stops before pixel data, so a file cut short inside its pixel
data would parse fine; this walk checks that every element's declared length fits in the bytes
that arrived.
"""

from __future__ import annotations

import struct
import zlib

_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_ITEM_END = (0xFFFE, 0xE00D)
_SEQ_END = (0xFFFE, 0xE0DD)
_MAX_DEPTH = 32


class TruncatedError(ValueError):
    """The encoded dataset ends before an element's declared end."""


class _Walker:
    def __init__(self, data: bytes | memoryview, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.fmt_tag = "<HH" if little else ">HH"
        self.fmt_u16 = "<H" if little else ">H"
        self.fmt_u32 = "<I" if little else ">I"

    def need(self, pos: int, n: int) -> None:
        if pos + n > len(self.data):
            raise TruncatedError(f"data ends at byte {len(self.data)}, element needs {pos + n}")

    def header(self, pos: int) -> tuple[tuple[int, int], int, int]:
        """Return (tag, value length, position of the value)."""
        self.need(pos, 8)
        tag = struct.unpack_from(self.fmt_tag, self.data, pos)
        if tag[0] == 0xFFFE or not self.explicit:
            (length,) = struct.unpack_from(self.fmt_u32, self.data, pos + 4)
            return tag, length, pos + 8
        vr = bytes(self.data[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            self.need(pos, 12)
            (length,) = struct.unpack_from(self.fmt_u32, self.data, pos + 8)
            return tag, length, pos + 12
        (length,) = struct.unpack_from(self.fmt_u16, self.data, pos + 6)
        return tag, length, pos + 8

    def elements(self, pos: int, end: int | None, depth: int) -> int:
        """Walk elements from ``pos``; stop at ``end`` or at an item delimiter."""
        limit = len(self.data) if end is None else end
        while pos < limit:
            tag, length, pos = self.header(pos)
            if tag == _ITEM_END:
                return pos
            pos = self.value(pos, length, depth)
        if end is not None and pos != end:
            raise TruncatedError("an item's elements overrun its declared length")
        return pos

    def value(self, pos: int, length: int, depth: int) -> int:
        if length != _UNDEFINED:
            self.need(pos, length)
            return pos + length
        if depth >= _MAX_DEPTH:
            raise TruncatedError("sequences nested too deep")
        return self.items(pos, depth + 1)

    def items(self, pos: int, depth: int) -> int:
        """Walk the items of an undefined-length sequence or encapsulated pixel data."""
        while True:
            tag, length, pos = self.header(pos)
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise TruncatedError(f"expected an item, found ({tag[0]:04X},{tag[1]:04X})")
            if length == _UNDEFINED:
                pos = self.elements(pos, None, depth)
            else:
                self.need(pos, length)
                pos += length


def check_complete(data: bytes | memoryview, transfer_syntax: str) -> None:
    """Raise TruncatedError when the dataset encoded in ``data`` is cut short.

    Parameters
    ----------
    data
        The dataset bytes after the file meta information.
    transfer_syntax
        The transfer syntax UID the dataset is encoded in.
    """
    if transfer_syntax == "1.2.840.10008.1.2.1.99":  # deflated explicit VR little endian
        try:
            data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bytes(data))
        except zlib.error as exc:
            raise TruncatedError(f"deflated data is corrupt: {exc}") from exc
    explicit = transfer_syntax != "1.2.840.10008.1.2"
    little = transfer_syntax != "1.2.840.10008.1.2.2"
    walker = _Walker(data, explicit, little)
    walker.elements(0, None, 0)


def check_elements(data: bytes | memoryview, pos: int, *, explicit: bool) -> None:
    """Raise TruncatedError when the little-endian elements from ``pos`` on are cut short."""
    _Walker(data, explicit, little=True).elements(pos, None, 0)


def sequence_end(data: bytes | memoryview, pos: int, *, explicit: bool) -> int:
    """Return where the little-endian undefined-length sequence whose items start at ``pos`` ends.

    Raises
    ------
    TruncatedError
        When the items or their delimiter are cut short, or something else stands among them.
    """
    return _Walker(data, explicit, little=True).items(pos, 1)


def meta_end(data: bytes | memoryview, start: int) -> int:
    """Return the offset just after the group 0002 elements that begin at ``start``.

    Walks the elements instead of trusting (0002,0000), which real files sometimes omit.
    """
    walker = _Walker(data, explicit=True, little=True)
    pos = start
    while pos + 8 <= len(data):
        (group,) = struct.unpack_from("<H", data, pos)
        if group != 0x0002:
            return pos
        _tag, length, value = walker.header(pos)
        pos = walker.value(value, length, 0)
    raise TruncatedError("the file meta information group is cut short")
