"""``multipart/related`` response bodies, streamed part by part (files read in large chunks)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 2 * 1024 * 1024  # the largest write; data given whole at this size goes as it is
FIRST = 64 * 1024  # the first write's buffer; each next one twice as large, up to CHUNK


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its content type and either bytes, a file, or a producer of bytes."""

    content_type: str
    data: bytes | None = None
    path: Path | None = None
    produce: Callable[[], bytes] | None = None
    location: str | None = None


def new_boundary() -> str:
    """Return a fresh boundary that cannot occur in DICOM data by chance."""
    return f"dicomgate-{uuid.uuid4().hex}"


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """Return the ``Content-Type`` of a multipart/related body of ``part_type`` parts."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return value + (f"; transfer-syntax={transfer_syntax}" if transfer_syntax else "")


def _head(boundary: str, part: Part) -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {part.content_type}"]
    if part.location:
        lines.append(f"Content-Location: {part.location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _body(part: Part) -> Iterator[bytes]:
    if part.data is not None:
        yield part.data
    elif part.produce is not None:
        yield part.produce()


def body_length(parts: list[Part], sizes: list[int], boundary: str) -> int:
    """Return the length of ``stream(parts, boundary)`` given each part's body size."""
    heads = sum(len(_head(boundary, part)) for part in parts) + 2 * max(len(parts) - 1, 0)
    closing = len(f"--{boundary}--\r\n") + (2 if parts else 0)
    return heads + sum(sizes) + closing


def stream(parts: Iterable[Part], boundary: str) -> Iterator[bytes | memoryview]:
    """Yield the encoded body: each part's head and data, then the closing delimiter.

    The body goes out in full buffers that heads are copied into and files are read straight
    into (``_Writes``), growing from ``FIRST`` to ``CHUNK`` bytes: a study of 512 KiB files
    had gone in one write per file, each a trip from the server's event loop to a thread and
    back, and a 105 MB study came 1,342 -> 1,684 MB/s (median of 4 rounds of 5 retrievals)
    in 2 MiB writes. Data of ``CHUNK`` bytes or more that is given or produced whole goes as
    it is.
    """
    writes = _Writes()
    lead = b""
    for part in parts:
        yield from writes.add(lead + _head(boundary, part))
        lead = b"\r\n"
        if part.path is not None:
            yield from writes.add_file(part.path)
            continue
        for piece in _body(part):
            yield from writes.add(piece)
    yield from writes.add(lead + f"--{boundary}--\r\n".encode("ascii"))
    yield from writes.flush()


class _Writes:
    """The body's writes, each buffer filled before it goes.

    Buffers grow from ``FIRST`` to ``CHUNK`` bytes, so a short body costs a small buffer, not
    a zeroed ``CHUNK``. (Anonymous ``mmap`` buffers, which are not zeroed up front, halved a
    study's rate: each write then faulted in fresh pages.)
    """

    def __init__(self) -> None:
        self._view: memoryview | None = None
        self._used = 0
        self._next = FIRST

    def _free(self) -> memoryview:
        """Return the unwritten rest of the current buffer (a new one when there is none)."""
        if self._view is None:
            self._view = memoryview(bytearray(self._next))
            self._used = 0
            self._next = min(CHUNK, 2 * self._next)
        return self._view[self._used :]

    def flush(self) -> Iterator[memoryview]:
        """Yield what the current buffer holds, if anything; the next piece starts a new one."""
        if self._view is not None and self._used:
            yield self._view[: self._used]
        self._view, self._used = None, 0

    def add(self, piece: bytes) -> Iterator[bytes | memoryview]:
        """Copy ``piece`` in, or send it as it is when it is ``CHUNK`` bytes or more."""
        if len(piece) >= CHUNK:
            yield from self.flush()
            yield piece
            return
        rest = memoryview(piece)
        while rest:
            room = self._free()
            if not room:
                yield from self.flush()
                continue
            count = min(len(room), len(rest))
            room[:count] = rest[:count]
            self._used += count
            rest = rest[count:]

    def add_file(self, path: Path) -> Iterator[memoryview]:
        """Read the file straight into the buffers, up to its end."""
        with path.open("rb", buffering=0) as fh:
            while True:
                room = self._free()
                if not room:
                    yield from self.flush()
                    continue
                got = fh.readinto(room)
                if not got:
                    return
                self._used += got
