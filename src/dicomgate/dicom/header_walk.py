"""Read a little-endian dataset's header and prove the dataset complete, in one walk.

Intake used to read each header with pydicom's ``read_dataset`` and then walk the same bytes
again (``structure.check_complete``) to prove nothing was cut short: two walks, and pydicom's
generator reads through a file object element by element. This walk does both straight from
the bytes and hands pydicom the same raw elements its reader makes, so values still decode
lazily and exactly as before (``tests/unit/dicom/test_header_walk.py`` compares the two on
every file pydicom ships and on generated corner cases).

It covers what nearly every instance is: little endian, explicit or implicit VR, defined
lengths, and sequences of undefined length (read by pydicom's own ``read_sequence``). For
anything else, such as an unknown VR, a VR that switches between explicit and implicit, or
an undefined-length value that is not a sequence, it returns None and the caller reads the
header with pydicom, whose heuristics and warnings then apply unchanged.
"""

from __future__ import annotations

import functools
import struct
from io import BytesIO
from typing import cast

from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    DataElement,
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import Dataset
from pydicom.filereader import read_sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from dicomgate.dicom.structure import TruncatedError, check_elements, sequence_end

_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_IMPLICIT = struct.Struct("<HHL").unpack_from
_U32 = struct.Struct("<L").unpack_from
_VRS = {str(vr).encode(): str(vr) for vr in VR if len(str(vr)) == 2}
_LONG = frozenset(str(vr) for vr in EXPLICIT_VR_LENGTH_32)
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM_END = 0xFFFEE00D
_ITEM_AS_U32 = 0xE000FFFE  # (FFFE,E000) read as one little-endian 32-bit number
_CHARSET = 0x00080005

Elements = dict[BaseTag, RawDataElement | DataElement]


class _UnusualEncodingError(Exception):
    """The dataset needs pydicom's own reader (its heuristics for odd encodings)."""


def _looks_implicit(data: bytes, pos: int) -> bool:
    # pydicom's test: the first element's VR bytes are not two capital letters.
    return not (0x40 < data[pos + 4] < 0x5B and 0x40 < data[pos + 5] < 0x5B)


def _sequence_vr(data: bytes, tag: int, vr: str | None, value: int) -> str | None:
    """Return the VR pydicom gives an undefined-length element (``data_element_generator``)."""
    if vr == VR.UN and config.settings.infer_sq_for_un_vr:
        return "SQ"
    if vr is None or (vr == VR.UN and config.replace_un_with_known_vr):
        try:
            return str(dictionary_VR(tag))
        except KeyError:
            if value + 4 <= len(data) and _U32(data, value)[0] == _ITEM_AS_U32:
                return "SQ"
    return vr


@functools.lru_cache(maxsize=64)
def _cached_encodings(raw: bytes) -> tuple[str, ...] | str:
    encodings = convert_encodings(convert_string(raw, True))
    return encodings if isinstance(encodings, str) else tuple(encodings)


def _encodings(raw: bytes) -> str | list[str]:
    """Return the Python encodings of a raw Specific Character Set (the same few, every time)."""
    encodings = _cached_encodings(raw)
    return encodings if isinstance(encodings, str) else list(encodings)


class _Reader:
    """One pass over a dataset's elements; positions are offsets into the whole ``data``."""

    def __init__(self, data: bytes, implicit: bool) -> None:
        self.data = data
        self.implicit = implicit
        self.encoding: str | list[str] = default_encoding
        self.elements: Elements = {}

    def header(self, pos: int) -> tuple[int, str | None, int, int]:
        """Return (tag, VR, value length, value position) of the element at ``pos``."""
        data = self.data
        if self.implicit:
            group, elem, length = _IMPLICIT(data, pos)
            return group << 16 | elem, None, length, pos + 8
        group, elem, raw_vr, length = _EXPLICIT(data, pos)
        vr = _VRS.get(raw_vr)
        if vr is None:
            raise _UnusualEncodingError
        if vr in _LONG:
            if pos + 12 > len(data):
                raise TruncatedError(f"data ends at byte {len(data)}, element needs {pos + 12}")
            return group << 16 | elem, vr, _U32(data, pos + 8)[0], pos + 12
        return group << 16 | elem, vr, length, pos + 8

    def defined(self, tag: int, vr: str | None, length: int, value: int) -> int:
        data = self.data
        end = value + length
        if end > len(data):
            raise TruncatedError(f"data ends at byte {len(data)}, element needs {end}")
        # As pydicom's reader: an empty value is the VR's raw empty value (b"" or None).
        raw = data[value:end] if length else cast(bytes | None, empty_value_for_VR(vr, raw=True))
        if tag == _CHARSET:
            self.encoding = _encodings(data[value:end])
        key = BaseTag(tag)
        self.elements[key] = RawDataElement(key, vr, length, raw, value, self.implicit, True)
        return end

    def undefined(self, tag: int, vr: str | None, value: int) -> int:
        if _sequence_vr(self.data, tag, vr, value) != "SQ":
            raise _UnusualEncodingError
        end = sequence_end(self.data, value, explicit=not self.implicit)
        fp = BytesIO(self.data)  # shares the bytes
        fp.seek(value)
        seq = read_sequence(fp, self.implicit, True, _UNDEFINED, self.encoding)
        if fp.tell() != end:  # pydicom saw the items differently: let it read the whole header
            raise _UnusualEncodingError
        key = BaseTag(tag)
        self.elements[key] = DataElement(key, "SQ", seq, value, is_undefined_length=True)
        return end

    def read(self, pos: int, end: int, stop_at_pixels: bool) -> int:
        """Read elements from ``pos`` to ``end``; return where reading stopped."""
        while pos + 8 <= end:
            tag, vr, length, value = self.header(pos)
            if tag == _ITEM_END or (stop_at_pixels and tag >= _PIXEL_DATA):
                return pos
            if length == _UNDEFINED:
                pos = self.undefined(tag, vr, value)
            else:
                pos = self.defined(tag, vr, length, value)
        return pos

    def dataset(self) -> Dataset:
        """Return the elements read as pydicom's ``read_dataset`` returns them."""
        ds = Dataset(self.elements, parent_encoding=default_encoding)
        encoding: str | list[str] = default_encoding
        charset = self.elements.get(BaseTag(_CHARSET))
        if isinstance(charset, RawDataElement):
            encoding = convert_encodings(convert_raw_data_element(charset).value)
        ds.set_original_encoding(self.implicit, True, encoding)
        return ds


def read_meta(data: bytes, start: int, end: int) -> Dataset | None:
    """Read the file meta group (explicit VR little endian) between ``start`` and ``end``.

    Returns None when pydicom's reader should read it instead (see the module's docstring).
    """
    if end - start < 6 or _looks_implicit(data, start):
        return None
    reader = _Reader(data, implicit=False)
    try:
        reader.read(start, end, stop_at_pixels=False)
    except _UnusualEncodingError:
        return None
    return reader.dataset()


def walk_header(data: bytes, offset: int, implicit: bool) -> _Reader | None:
    """Walk the dataset at ``offset`` as ``read_header`` does; return the walk, not a Dataset.

    For a caller that wants a few raw elements (``walk.elements``) and builds the Dataset
    (``walk.dataset()``) only when it needs one. Raises as ``read_header`` does.
    """
    if len(data) - offset >= 6 and _looks_implicit(data, offset) != implicit:
        return None
    reader = _Reader(data, implicit)
    try:
        pos = reader.read(offset, len(data), stop_at_pixels=True)
    except _UnusualEncodingError:
        return None
    check_elements(data, pos, explicit=not implicit)
    return reader


def read_header(data: bytes, offset: int, implicit: bool) -> Dataset | None:
    """Read the little-endian dataset at ``offset`` up to pixel data, and check it is complete.

    Parameters
    ----------
    data
        The bytes holding the dataset (a whole Part-10 file, or a bare dataset at offset 0).
    offset
        Where the dataset starts.
    implicit
        True for implicit VR little endian, False for explicit VR little endian.

    Returns
    -------
    Dataset or None
        The header, as pydicom's ``read_dataset`` with a stop at pixel data would return it;
        None when this walk leaves the dataset to pydicom.

    Raises
    ------
    TruncatedError
        When an element's declared length runs past the end of ``data``.
    """
    reader = walk_header(data, offset, implicit)
    return None if reader is None else reader.dataset()
