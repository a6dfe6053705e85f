"""The tar side of the archive reader: plain or compressed tar files, read as a stream.

The stream passes through :class:`_TarGuard`, which caps the decompressed bytes and follows
the 512-byte block structure, so that a pax or GNU long-name header declaring gigabytes is
refused before ``tarfile`` would hold it in memory.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dicomgate.sources.archives import (
    ArchiveError,
    ArchiveLimitError,
    ArchiveLimits,
    ArchiveReader,
    Entry,
    EntryKeys,
    Readable,
    entry_limit_message,
    name_problem,
    read_capped,
    total_limit_message,
)

_TAR_OVERHEAD = 1 << 20  # headers and padding allowed beyond the entries' own bytes
_MAX_TAR_METADATA = 1 << 20  # pax and GNU long-name headers


class _TarGuard:
    """A read-only tar stream that caps the bytes handed out and the size of metadata headers.

    It follows the 512-byte block structure as the bytes pass, so that a pax or GNU long-name
    header declaring gigabytes is refused before ``tarfile`` tries to hold it in memory.
    """

    def __init__(self, raw: Readable, budget: int, message: str) -> None:
        self._raw = raw
        self._left = budget
        self._message = message
        self._skip = 0
        self._header = b""

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self._left:
            size = self._left + 1
        data = self._raw.read(size)
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveLimitError(self._message)
        self._scan(data)
        return data

    def _scan(self, data: bytes) -> None:
        at = 0
        while at < len(data):
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                continue
            need = 512 - len(self._header)
            self._header += data[at : at + need]
            at += need
            if len(self._header) == 512:
                self._skip = _header_data_size(self._header)
                self._header = b""


def _header_data_size(block: bytes) -> int:
    """Return the padded size of the data after a tar header block; refuse huge metadata."""
    field = block[124:136]
    if field[:1] and field[0] & 0x80:
        size = int.from_bytes(field[1:], "big")
    else:
        try:
            size = int(field.split(b"\x00")[0].strip() or b"0", 8)
        except ValueError:
            return 0  # not a header tarfile can read either: it reports the corruption
    if block[156:157] in (b"x", b"g", b"L", b"K") and size > _MAX_TAR_METADATA:
        raise ArchiveLimitError(f"a tar metadata header declares {size} bytes (a tar bomb?)")
    return (size + 511) // 512 * 512


_TAR_TYPES = (
    (tarfile.TarInfo.issym, "symbolic link entry (not followed)"),
    (tarfile.TarInfo.islnk, "hard link entry (not followed)"),
    (tarfile.TarInfo.ischr, "device entry"),
    (tarfile.TarInfo.isblk, "device entry"),
    (tarfile.TarInfo.isfifo, "FIFO entry"),
)


def _tar_problem(member: tarfile.TarInfo) -> str:
    problem = name_problem(member.name)
    if problem:
        return problem
    for test, reason in _TAR_TYPES:
        if test(member):
            return reason
    return "" if member.isfile() else "unsupported entry type"


def _decompressed(kind: str, raw: BinaryIO) -> Readable:
    if kind == "tar.gz":
        return gzip.GzipFile(fileobj=raw)
    if kind == "tar.bz2":
        return bz2.BZ2File(raw)
    if kind == "tar.xz":
        return lzma.LZMAFile(raw)
    return raw


class TarReader(ArchiveReader):
    """A tar file, plain or compressed, read as a stream (never seeked, never extracted)."""

    def __init__(self, path: Path, limits: ArchiveLimits, kind: str) -> None:
        super().__init__(path, limits)
        self.kind = kind

    def _members(self) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
        budget = self.limits.max_total_bytes + _TAR_OVERHEAD + 1024 * self.limits.max_entries
        with self.path.open("rb") as raw:
            message = total_limit_message(self.limits.max_total_bytes)
            capped = _TarGuard(_decompressed(self.kind, raw), budget, message)
            try:
                with tarfile.open(fileobj=capped, mode="r|") as tf:  # type: ignore[call-overload]
                    total = 0
                    for count, member in enumerate(tf, start=1):
                        self._count(count)
                        total += self._check_member(member)
                        if total > self.limits.max_total_bytes:
                            raise ArchiveLimitError(message)
                        yield tf, member
            except ArchiveLimitError:
                raise
            except (tarfile.TarError, zlib.error, EOFError, OSError, lzma.LZMAError) as exc:
                raise ArchiveError(f"corrupt {self.kind} file: {exc}") from exc

    def _check_member(self, member: tarfile.TarInfo) -> int:
        """Refuse a regular member declaring more than the per-entry cap; return its size."""
        if not member.isfile() or _tar_problem(member):
            return 0
        if member.size > self.limits.max_entry_bytes:
            raise ArchiveLimitError(entry_limit_message(member.name, self.limits.max_entry_bytes))
        return int(member.size)

    def entries(self) -> list[Entry]:
        """Return every non-directory entry, refused ones with their problem."""
        keys = EntryKeys()
        entries = [
            keys.entry(m.name, m.size, _tar_problem(m)) for _, m in self._members() if not m.isdir()
        ]
        self._check_declared(entries)
        return entries

    def read(self, wanted: set[str]) -> Iterator[tuple[Entry, bytes]]:
        """Yield the wanted regular entries with their bytes, one at a time."""
        keys = EntryKeys()
        for tf, member in self._members():
            if member.isdir():
                continue
            entry = keys.entry(member.name, member.size, _tar_problem(member))
            if entry.problem or entry.key not in wanted:
                continue
            stream = tf.extractfile(member)
            assert stream is not None  # a regular file member always has a stream
            yield entry, read_capped(stream, entry.key, self.limits.max_entry_bytes)
