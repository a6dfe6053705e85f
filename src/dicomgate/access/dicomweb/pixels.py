"""Pixel data of a stored file: frames as stored or decoded, and transcoding to explicit VR LE."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from dicomgate.access.dicomweb.negotiate import EXPLICIT_LE
from dicomgate.errors import InvalidInputError, NotFoundError

_NATIVE = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.1.99"}
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
MAX_FRAME_LIST = 10_000


def is_native(syntax: str) -> bool:
    """Return True when pixel data in ``syntax`` is not encapsulated."""
    return syntax in _NATIVE or syntax == _BIG_ENDIAN


def can_decode(syntax: str) -> bool:
    """Return True when pixel data in ``syntax`` can be decoded here."""
    if syntax == _BIG_ENDIAN:
        return False
    if is_native(syntax):
        return True
    try:
        return bool(get_decoder(UID(syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


def producible(syntax: str) -> set[str]:
    """Return the transfer syntaxes an instance stored in ``syntax`` can be sent in."""
    return {syntax, EXPLICIT_LE} if can_decode(syntax) else {syntax}


def transcode(path: Path) -> bytes:
    """Return the stored file re-encoded in explicit VR little endian (decoded pixels)."""
    ds = dcmread(path)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    if syntax == EXPLICIT_LE:
        return path.read_bytes()
    if not is_native(syntax):
        ds.decompress()  # pydicom sets explicit VR little endian
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    out = BytesIO()
    ds.save_as(out, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return out.getvalue()


def parse_frame_list(text: str, count: int) -> list[int]:
    """Parse ``1,3,5`` into frame numbers, each from 1 to ``count``.

    Raises
    ------
    InvalidInputError
        When the list is not comma-separated positive integers.
    NotFoundError
        When a frame number is beyond the instance's frames.
    """
    parts = text.split(",")
    if len(parts) > MAX_FRAME_LIST or not all(p.isdigit() and len(p) < 10 for p in parts):
        raise InvalidInputError("frames must be a comma-separated list of frame numbers")
    numbers = [int(p) for p in parts]
    if any(n < 1 or n > count for n in numbers):
        raise NotFoundError(f"the instance has {count} frame(s), numbered from 1")
    return numbers


def frame_count(ds: Dataset) -> int:
    """Return the number of frames of an image dataset (0 when it has no pixel data)."""
    if "PixelData" not in ds:
        return 0
    return int(ds.get("NumberOfFrames", 1) or 1)


def stored_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """Return the frames as stored: native bytes, or each frame's compressed bitstream."""
    syntax = str(ds.file_meta.TransferSyntaxUID)
    count = frame_count(ds)
    if not is_native(syntax):
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [frames[n - 1] for n in numbers]
    bits = int(ds.BitsAllocated)
    if bits % 8:
        raise InvalidInputError("frames of 1-bit pixel data are sent whole through bulkdata")
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    data = ds.PixelData
    return [bytes(data[(n - 1) * size : n * size]) for n in numbers]


def decoded_frames(ds: Dataset, numbers: list[int]) -> list[bytes]:
    """Return the frames decoded to native little-endian pixel bytes."""
    array = ds.pixel_array
    if frame_count(ds) == 1:
        array = array[np.newaxis, ...]
    return [np.ascontiguousarray(array[n - 1]).astype(array.dtype.newbyteorder("<")).tobytes()
            for n in numbers]  # fmt: skip
