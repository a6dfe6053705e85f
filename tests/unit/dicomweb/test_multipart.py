"""``multipart.stream``: the same bytes whatever the sizes of the parts, as long as announced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicomgate.access.dicomweb import multipart
from dicomgate.access.dicomweb.multipart import CHUNK, LARGE, Part, body_length, stream

DICOM = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
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
    # At most what was gathered (under CHUNK) and a CHUNK of a large file.
    assert all(len(piece) < 2 * CHUNK + 4096 for piece in pieces)


def test_a_large_file_is_read_into_one_write_with_what_came_before(tmp_path: Path) -> None:
    path = tmp_path / "large.dcm"
    path.write_bytes(b"x" * LARGE)
    pieces = list(stream([Part(DICOM, data=b"small"), Part(DICOM, path=path)], "b0und"))
    assert len(pieces) == 2  # the small part and the large file's head go with the file
    first = pieces[0]
    assert isinstance(first, memoryview) and len(first) > LARGE
    assert bytes(first[:9]) == b"--b0und\r\n" and bytes(first[-LARGE:]) == b"x" * LARGE
    assert pieces[1] == b"\r\n--b0und--\r\n"


def test_a_file_shorter_than_its_size_said_ends_where_the_file_ends(tmp_path: Path) -> None:
    path = tmp_path / "shrinking.dcm"
    path.write_bytes(b"y" * LARGE)
    with path.open("rb") as fh:
        view = multipart._read_after([b"head"], 4, fh, LARGE + 10)
    assert bytes(view) == b"head" + b"y" * LARGE


def test_the_empty_body() -> None:
    assert b"".join(stream([], "b0und")) == b"--b0und--\r\n" == _expected([], [], "b0und")
    assert body_length([], [], "b0und") == len(b"--b0und--\r\n")
