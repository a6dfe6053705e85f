"""``multipart.stream``: the same bytes whatever the sizes of the parts, as long as announced."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from dicomgate.access.dicomweb.multipart import CHUNK, FIRST, Part, body_length, stream

DICOM = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
LARGE = 512 * 1024
SIZES = [0, 1, 1000, LARGE - 1, LARGE, LARGE + 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7]


def _expected(parts: list[Part], bodies: list[bytes], boundary: str) -> bytes:
    out = b""
    for number, (part, body) in enumerate(zip(parts, bodies, strict=True)):
        lead = b"\r\n" if number else b""
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n\r\n".encode()
        out += lead + head + body
    return out + (b"\r\n" if parts else b"") + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("order", ["growing", "shrinking", "mixed"])
def test_files_and_data_of_every_size_stream_as_encoded(tmp_path: Path, order: str) -> None:
    sizes = {"growing": SIZES, "shrinking": SIZES[::-1], "mixed": SIZES[1::2] + SIZES[::2]}
    parts, bodies = [], []
    for number, size in enumerate(sizes[order]):
        body = os.urandom(size)
        bodies.append(body)
        if number % 3 == 2:
            parts.append(Part(DICOM, data=body))
        else:
            path = tmp_path / f"{number}.dcm"
            path.write_bytes(body)
            parts.append(Part(DICOM, path=path))
    pieces = list(stream(parts, "b0und"))
    encoded = b"".join(pieces)
    assert encoded == _expected(parts, bodies, "b0und")
    assert body_length(parts, [len(b) for b in bodies], "b0und") == len(encoded)
    # Full buffers, growing from FIRST to CHUNK bytes, but for data of CHUNK bytes or more
    # given whole, the write before it, and the last.
    whole = {id(part.data) for part in parts if part.data is not None and len(part.data) >= CHUNK}
    buffers = [FIRST << n for n in range(6)] + [CHUNK]
    for piece, after in itertools.pairwise(pieces):
        given, before_given = id(piece) in whole, id(after) in whole
        assert given or before_given or len(piece) in buffers, len(piece)


def test_a_study_of_files_goes_in_writes_of_chunk_bytes(tmp_path: Path) -> None:
    # Every write is a trip to a thread and back in the server: one per file had been 200
    # for a study of 200 files of 512 KiB.
    parts = []
    for number in range(20):
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(bytes([number]) * LARGE)
        parts.append(Part(DICOM, path=path))
    pieces = list(stream(parts, "b0und"))
    total = len(b"".join(pieces))
    assert total == body_length(parts, [LARGE] * 20, "b0und")
    ramp = [FIRST << n for n in range(5)]  # 64 KiB to 1 MiB, then CHUNK (2 MiB) each
    full = (total - sum(ramp)) // CHUNK
    assert [len(p) for p in pieces] == [*ramp, *[CHUNK] * full, total - sum(ramp) - full * CHUNK]


def test_a_short_body_is_one_write_of_its_size(tmp_path: Path) -> None:
    path = tmp_path / "small.dcm"
    path.write_bytes(b"x" * 1000)
    pieces = list(stream([Part(DICOM, path=path)], "b0und"))
    assert len(pieces) == 1
    assert bytes(pieces[0]) == _expected([Part(DICOM, path=path)], [b"x" * 1000], "b0und")


def test_a_file_shorter_than_its_size_said_ends_where_the_file_ends(tmp_path: Path) -> None:
    path = tmp_path / "shrunk.dcm"
    path.write_bytes(b"y" * 10)
    parts = [Part(DICOM, path=path)]
    assert b"".join(stream(parts, "b0und")) == _expected(parts, [b"y" * 10], "b0und")


def test_the_empty_body() -> None:
    assert b"".join(stream([], "b0und")) == b"--b0und--\r\n" == _expected([], [], "b0und")
    assert body_length([], [], "b0und") == len(b"--b0und--\r\n")
