"""Tag extraction to CSV: the pacsanini ``tags`` section over an archive project or a folder.

A tag spec has ``tag_name`` (a keyword, ``Parent.Child`` for the first item of a sequence, or a
list tried in order until one has a value), ``tag_alias`` (the column), ``callback`` (a builtin
name such as ``str``/``int``/``float``, ``pacsanini.convert:str2datetime``, or, from trusted
config files only, any ``module:function``) and ``default_val`` (when no value was found).
As in pacsanini, a callback that fails leaves the raw value.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import importlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from sqlalchemy import select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.models import Instance, Series, Study
from dicomgate.db import Database
from dicomgate.errors import ConfigError, InvalidInputError

log = logging.getLogger(__name__)


def _str2datetime(value: Any) -> dt.datetime | dt.date:
    """Parse a DICOM DA (YYYYMMDD) or DT value."""
    text = str(value).strip()
    if len(text) == 8:
        return dt.datetime.strptime(text, "%Y%m%d")
    return dt.datetime.strptime(text[:14].ljust(14, "0"), "%Y%m%d%H%M%S")


BUILTIN_CALLBACKS: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "str2datetime": _str2datetime,
    "pacsanini.convert:str2datetime": _str2datetime,
}


def resolve_callback(name: str, allow_import: bool) -> Callable[[Any], Any]:
    """Return the callback called ``name``.

    Raises
    ------
    ConfigError
        When the name is unknown, or names a module function while imports are not allowed.
    """
    if name in BUILTIN_CALLBACKS:
        return BUILTIN_CALLBACKS[name]
    if ":" not in name:
        known = ", ".join(sorted(BUILTIN_CALLBACKS))
        raise ConfigError(f"callback {name!r} is unknown: use one of {known} or module:function")
    if not allow_import:
        raise ConfigError(f"callback {name!r}: module functions are allowed in config files only")
    module_name, _, func_name = name.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"callback {name!r} cannot be imported: {exc}") from exc
    if not callable(func):
        raise ConfigError(f"callback {name!r} is not a function")
    return func  # type: ignore[no-any-return]


class TagSpec(BaseModel):
    """One column of a tag extraction (the pacsanini ``tags`` item)."""

    model_config = ConfigDict(extra="forbid")

    tag_name: list[str] = Field(min_length=1)
    tag_alias: str = ""
    callback: str | None = None
    default_val: Any = None

    @field_validator("tag_name", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        for name in names if isinstance(names, list) else []:
            for part in str(name).split("."):
                if tag_for_keyword(part) is None:
                    raise ValueError(f"unknown DICOM keyword {part!r}")
        return names

    @model_validator(mode="after")
    def _alias(self) -> TagSpec:
        if not self.tag_alias:
            self.tag_alias = self.tag_name[0]
        return self


class Extractor:
    """Applies tag specs to datasets or find results, giving one row per item."""

    def __init__(self, specs: list[TagSpec], allow_import: bool = False) -> None:
        self.specs = specs
        self.columns = [spec.tag_alias for spec in specs]
        if len(set(self.columns)) != len(self.columns):
            raise ConfigError("two tags have the same column name (tag_alias)")
        self._callbacks = [
            resolve_callback(spec.callback, allow_import) if spec.callback else None
            for spec in specs
        ]

    def row(self, source: Dataset | Mapping[str, str]) -> dict[str, Any]:
        """Return the columns of one dataset or one find result."""
        values: dict[str, Any] = {}
        for spec, callback in zip(self.specs, self._callbacks, strict=True):
            value = None
            for name in spec.tag_name:
                value = _lookup(source, name)
                if value not in (None, ""):
                    break
            if value in (None, "") and spec.default_val is not None:
                value = spec.default_val
            elif value is not None and callback is not None:
                # pacsanini keeps the raw value when a callback fails.
                with contextlib.suppress(Exception):
                    value = callback(value)
            values[spec.tag_alias] = _plain(value)
        return values


def _lookup(source: Dataset | Mapping[str, str], name: str) -> Any:
    if not isinstance(source, Dataset):
        return source.get(name)
    head, _, rest = name.partition(".")
    element = source.get(head)
    if element is None:
        return None
    if rest:
        if not isinstance(element, Sequence) or not element:
            return None
        return _lookup(element[0], rest)
    return element


def _plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(_plain(v)) for v in value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def archive_datasets(db: Database, blobs: FilesystemBlobStore, project: str) -> Iterator[Dataset]:
    """Yield the header of every archived instance of ``project`` (no pixel data)."""
    query = (
        select(Instance.blob_key)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
        .where(Study.project_id == project)
        .order_by(Study.pk, Series.pk, Instance.instance_number, Instance.pk)
    )
    with db.reader() as session:
        keys = list(session.scalars(query))
    for key in keys:
        yield dcmread(io.BytesIO(blobs.read(key)), stop_before_pixels=True, force=True)


def folder_datasets(folder: Path, problems: list[tuple[Path, str]]) -> Iterator[Dataset]:
    """Yield the header of every DICOM file under ``folder``; others go to ``problems``."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            yield dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            problems.append((path, f"not readable as DICOM: {type(exc).__name__}"))


def csv_lines(
    extractor: Extractor, sources: Iterable[Dataset | Mapping[str, str]]
) -> Iterator[str]:
    """Yield the CSV text, header first, one chunk per row (for streaming)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=extractor.columns, lineterminator="\n")
    writer.writeheader()
    yield buffer.getvalue()
    for source in sources:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(extractor.row(source))
        yield buffer.getvalue()


def parse_tag_list(text: str) -> list[TagSpec]:
    """Return specs from ``Keyword[:alias[:callback]]`` items separated by commas (REST)."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, rest = item.partition(":")
        alias, _, callback = rest.partition(":")
        try:
            specs.append(TagSpec(tag_name=name, tag_alias=alias, callback=callback or None))
        except ValueError as exc:
            raise InvalidInputError(f"tags: {item!r} is not a valid tag spec") from exc
    if not specs:
        raise InvalidInputError("tags: give at least one DICOM keyword")
    return specs
