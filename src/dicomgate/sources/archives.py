"""Read zip, tar and compressed tar files entry by entry, refusing what could escape or explode.

Nothing is ever extracted to disk: each regular entry is read into memory on its own (bounded
by the per-entry cap) and handed to the caller. Entry names are never used as paths here, but
names that would be dangerous as paths (absolute, ``..``, drive letters) are refused anyway,
and so are links, devices and FIFOs, each with a reason the caller reports.

Caps (entry count, decompressed bytes per entry and in total) are checked against the sizes
the archive declares before anything is read, and again against the bytes actually
decompressed: going over any of them raises :class:`ArchiveLimitError`, which ends the import
with a clear message (a zip bomb is such an archive).
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dicomgate.errors import InvalidInputError

_CHUNK = 1 << 20


class Readable(Protocol):
    """Anything with ``read(size)``: raw files and decompressing streams."""

    def read(self, size: int = -1, /) -> bytes:
        """Return up to ``size`` bytes (all when negative); ``b""`` at the end."""
        ...


class ArchiveError(InvalidInputError):
    """The archive cannot be read: not a zip or tar file, or corrupt."""


class ArchiveLimitError(ArchiveError):
    """The archive exceeds a cap (entry count, per-entry or total decompressed bytes)."""


class ArchiveLimits(BaseModel):
    """Caps applied to every archive an import reads.

    Parameters
    ----------
    max_entries
        Entries (of any type) an archive may hold.
    max_entry_bytes
        Decompressed bytes one entry may hold (it is read into memory).
    max_total_bytes
        Decompressed bytes all entries together may hold.
    """

    model_config = ConfigDict(extra="forbid")

    max_entries: int = Field(default=100_000, ge=1)
    max_entry_bytes: int = Field(default=1 << 30, ge=1)
    max_total_bytes: int = Field(default=64 << 30, ge=1)


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of an archive.

    Parameters
    ----------
    key
        Unique within the archive: the normalised name (``#2``... appended to repeated names).
    name
        The name as the archive stores it.
    size
        Decompressed size the archive declares.
    problem
        Why the entry is refused (not read), or ``""`` for a regular file entry.
    """

    key: str
    name: str
    size: int
    problem: str = ""


def name_problem(name: str) -> str:
    """Return why an entry name is unsafe as a relative path, or ``""`` when it is safe."""
    if not name or "\x00" in name:
        return "empty name or NUL character in the entry name"
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return "absolute entry name"
    if ".." in unified.split("/"):
        return "entry name climbs out of the archive ('..')"
    return ""


def _normalise(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts) or name


class EntryKeys:
    """Hands out unique keys for entry names."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def entry(self, name: str, size: int, problem: str) -> Entry:
        """Return the entry called ``name``; a refused one keeps its name as given."""
        return Entry(self._unique(name if problem else _normalise(name)), name, size, problem)

    def __call__(self, name: str) -> str:
        """Return the key of the next entry called ``name``."""
        return self._unique(_normalise(name))

    def _unique(self, base: str) -> str:
        count = self._seen.get(base, 0) + 1
        self._seen[base] = count
        return base if count == 1 else f"{base}#{count}"


def sniff(path: Path) -> str:
    """Return ``zip``, ``tar``, ``tar.gz``, ``tar.bz2`` or ``tar.xz`` from the file's content.

    Raises
    ------
    ArchiveError
        When the content is none of them.
    """
    with path.open("rb") as fh:
        head = fh.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:3] == b"BZh":
        return "tar.bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "tar.xz"
    if len(head) == 512 and (head[257:262] == b"ustar" or _v7_checksum_ok(head)):
        return "tar"
    raise ArchiveError("not a zip, tar or compressed tar file")


def _v7_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\x00")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


def open_archive(path: Path, limits: ArchiveLimits) -> ArchiveReader:
    """Return a reader for the zip or tar file at ``path`` (format found from the content)."""
    from dicomgate.sources.tar_archive import TarReader

    kind = sniff(path)
    if kind == "zip":
        return ZipReader(path, limits)
    return TarReader(path, limits, kind)


class ArchiveReader:
    """Lists and reads the entries of one archive file; see :func:`open_archive`."""

    kind = ""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.path = path
        self.limits = limits

    def entries(self) -> list[Entry]:
        """Return every non-directory entry, refused ones with their problem.

        Raises
        ------
        ArchiveLimitError
            When the declared entry count or sizes exceed the caps.
        ArchiveError
            When the archive is corrupt.
        """
        raise NotImplementedError

    def read(self, wanted: set[str]) -> Iterator[tuple[Entry, bytes]]:
        """Yield the regular entries whose key is in ``wanted``, one at a time, with their bytes.

        An entry found corrupt while reading comes back with its ``problem`` set and no bytes.

        Raises
        ------
        ArchiveLimitError
            When an entry or the whole archive decompresses beyond a cap.
        ArchiveError
            When the archive is corrupt beyond the current entry.
        """
        raise NotImplementedError

    def _check_declared(self, entries: list[Entry]) -> None:
        total = 0
        for entry in entries:
            if entry.problem:
                continue
            if entry.size > self.limits.max_entry_bytes:
                raise ArchiveLimitError(entry_limit_message(entry.key, self.limits.max_entry_bytes))
            total += entry.size
        if total > self.limits.max_total_bytes:
            raise ArchiveLimitError(total_limit_message(self.limits.max_total_bytes))

    def _count(self, count: int) -> None:
        if count > self.limits.max_entries:
            raise ArchiveLimitError(
                f"the archive holds more than {self.limits.max_entries} entries"
            )


def entry_limit_message(key: str, cap: int) -> str:
    """Return the message of an entry over the per-entry cap."""
    return f"entry {key!r} decompresses beyond the per-entry limit of {cap} bytes (a zip bomb?)"


def total_limit_message(cap: int) -> str:
    """Return the message of an archive over the total cap."""
    return f"the archive decompresses beyond the total limit of {cap} bytes (a zip bomb?)"


def read_capped(stream: IO[bytes], key: str, cap: int) -> bytes:
    """Read ``stream`` to its end, refusing more than ``cap`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > cap:
            raise ArchiveLimitError(entry_limit_message(key, cap))
        chunks.append(chunk)
    return b"".join(chunks)


_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ZIP_TYPES = {
    stat.S_IFLNK: "symbolic link entry (not followed)",
    stat.S_IFCHR: "device entry",
    stat.S_IFBLK: "device entry",
    stat.S_IFIFO: "FIFO entry",
    stat.S_IFSOCK: "socket entry",
}


def _zip_problem(info: zipfile.ZipInfo) -> str:
    problem = name_problem(info.filename)
    if problem:
        return problem
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) in _ZIP_TYPES:
        return _ZIP_TYPES[stat.S_IFMT(mode)]
    if info.flag_bits & 0x1:
        return "encrypted entry"
    if info.compress_type not in _ZIP_METHODS:
        return f"unsupported compression method {info.compress_type}"
    return ""


class ZipReader(ArchiveReader):
    """A zip file: the central directory lists the entries, each is read on its own."""

    kind = "zip"

    def _infos(self, zf: zipfile.ZipFile) -> list[tuple[Entry, zipfile.ZipInfo]]:
        infos = zf.infolist()
        self._count(len(infos))
        keys = EntryKeys()
        return [
            (keys.entry(i.filename, i.file_size, _zip_problem(i)), i)
            for i in infos
            if not i.is_dir()
        ]

    def _open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ArchiveError(f"corrupt zip file: {exc}") from exc

    def entries(self) -> list[Entry]:
        """Return every non-directory entry, refused ones with their problem."""
        with self._open() as zf:
            entries = [entry for entry, _ in self._infos(zf)]
        self._check_declared(entries)
        return entries

    def read(self, wanted: set[str]) -> Iterator[tuple[Entry, bytes]]:
        """Yield the wanted regular entries with their bytes, one at a time."""
        total = 0
        with self._open() as zf:
            pairs = self._infos(zf)
            self._check_declared([entry for entry, _ in pairs])
            for entry, info in pairs:
                if entry.problem or entry.key not in wanted:
                    continue
                try:
                    data = self._read_one(zf, entry, info)
                except ArchiveLimitError:
                    raise
                except ArchiveError as exc:  # one corrupt entry: the others are still readable
                    yield replace(entry, problem=str(exc)), b""
                    continue
                total += len(data)
                if total > self.limits.max_total_bytes:
                    raise ArchiveLimitError(total_limit_message(self.limits.max_total_bytes))
                yield entry, data

    def _read_one(self, zf: zipfile.ZipFile, entry: Entry, info: zipfile.ZipInfo) -> bytes:
        try:
            with zf.open(info) as stream:
                return read_capped(stream, entry.key, self.limits.max_entry_bytes)
        except ArchiveLimitError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            raise ArchiveError(f"entry {entry.key!r} is corrupt: {exc}") from exc
