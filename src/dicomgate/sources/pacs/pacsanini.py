"""pacsanini configuration files, read as they are (YAML or JSON).

Sections: ``move`` (start_time, end_time, query_level), ``net`` (local_node, called_node,
dest_node), ``find`` (query_level, search_fields, start_date, end_date, modality), ``storage``
(resources, directory, sort_by PATIENT / STUDY / IMAGE) and ``tags``. As in pacsanini, keys we
do not use are ignored, a missing ``dest_node`` is the ``local_node``, equal start and end times
mean no window, and the resources CSV is read from its single column, else from ``PatientID``
(PATIENT level) or ``StudyInstanceUID``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dicomgate.dicom.nodes import RemoteNode, TimeWindow, parse_clock_time
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import ConfigError, InvalidInputError

# Columns pacsanini always writes first in a find result.
BASE_FIELDS = ("Modality", "PatientName", "StudyDate")


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _level(value: Any) -> QueryLevel:
    text = str(value).strip().upper()
    if text not in ("PATIENT", "STUDY"):
        raise ValueError("query_level must be PATIENT or STUDY")
    return QueryLevel(text)


class DicomNodeConf(_Section):
    """A pacsanini DICOM node."""

    aetitle: str = Field(min_length=1, max_length=16)
    ip: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


class MoveSection(_Section):
    """When to move, and at which level."""

    start_time: dt.time | None = None
    end_time: dt.time | None = None
    query_level: QueryLevel = QueryLevel.STUDY

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _time(cls, value: Any) -> dt.time | None:
        return None if value in (None, "") else parse_clock_time(value)

    @field_validator("query_level", mode="before")
    @classmethod
    def _lvl(cls, value: Any) -> QueryLevel:
        return _level(value)

    @model_validator(mode="after")
    def _both(self) -> MoveSection:
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("start_time and end_time must both be set or both be unset")
        return self

    def windows(self) -> list[TimeWindow]:
        """Return the move window (none when unset or start equals end)."""
        if self.start_time is None or self.end_time is None or self.start_time == self.end_time:
            return []
        return [TimeWindow(start=self.start_time, end=self.end_time)]


class NetSection(_Section):
    """Our node, the node we call, and where C-MOVE sends to."""

    local_node: DicomNodeConf
    called_node: DicomNodeConf
    dest_node: DicomNodeConf | None = None

    @model_validator(mode="after")
    def _called(self) -> NetSection:
        if not self.called_node.ip or not self.called_node.port:
            raise ValueError("called_node needs ip and port")
        if self.dest_node is None:
            self.dest_node = self.local_node
        return self


class FindSection(_Section):
    """What to find."""

    query_level: QueryLevel = QueryLevel.STUDY
    search_fields: list[str] = Field(default_factory=list)
    start_date: dt.date
    end_date: dt.date | None = None
    modality: str | None = ""

    @field_validator("query_level", mode="before")
    @classmethod
    def _lvl(cls, value: Any) -> QueryLevel:
        return _level(value)

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) >= 8:
            return dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
        if isinstance(value, int) and len(str(value)) == 8:
            return dt.datetime.strptime(str(value), "%Y%m%d").date()
        return value

    @model_validator(mode="after")
    def _order(self) -> FindSection:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self

    def date_range(self) -> str:
        """Return the StudyDate matching value."""
        start = self.start_date.strftime("%Y%m%d")
        end = (self.end_date or self.start_date).strftime("%Y%m%d")
        return start if start == end else f"{start}-{end}"


class StorageSection(_Section):
    """Where find results and moved files go."""

    resources: str
    directory: str | None = None
    sort_by: str = "PATIENT"

    @field_validator("sort_by", mode="before")
    @classmethod
    def _sort(cls, value: Any) -> str:
        text = str(value).strip().upper()
        if text not in ("PATIENT", "STUDY", "IMAGE"):
            raise ValueError("sort_by must be PATIENT, STUDY or IMAGE")
        return text


class PacsaniniConfig(_Section):
    """A whole pacsanini configuration file."""

    move: MoveSection | None = None
    net: NetSection | None = None
    find: FindSection | None = None
    storage: StorageSection | None = None
    tags: list[dict[str, Any]] | None = None  # checked by access.extract.TagSpec

    def called_remote(self) -> RemoteNode:
        """Return the called node as a dicomgate remote node (C-MOVE, the move window)."""
        net = self.require_net()
        assert net.dest_node is not None  # set by the validator
        return RemoteNode(
            name="pacsanini",
            ae_title=net.called_node.aetitle,
            host=net.called_node.ip or "",
            port=net.called_node.port or 0,
            move_destination=net.dest_node.aetitle,
            windows=self.move.windows() if self.move else [],
            timezone=_local_zone(),
        )

    def require_net(self) -> NetSection:
        """Return the ``net`` section or say it is missing."""
        if self.net is None:
            raise ConfigError("the configuration file has no net section")
        return self.net

    def require_storage(self) -> StorageSection:
        """Return the ``storage`` section or say it is missing."""
        if self.storage is None:
            raise ConfigError("the configuration file has no storage section")
        return self.storage


def _local_zone() -> str:
    """Pacsanini compares with the machine's local time; use the machine's zone."""
    names = [os.environ.get("TZ", "").strip(" :")]
    link = Path("/etc/localtime")
    if link.is_symlink() and "zoneinfo/" in str(link.resolve()):
        names.append(str(link.resolve()).split("zoneinfo/", 1)[1])
    for name in names:
        try:
            if name:
                ZoneInfo(name)
                return name
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return "UTC"


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    )


def load_config(path: Path) -> PacsaniniConfig:
    """Read a pacsanini configuration file (``.json`` as JSON, anything else as YAML).

    Raises
    ------
    ConfigError
        When the file cannot be read or a section is invalid; the message names the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"{path} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    try:
        return PacsaniniConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc


def read_resources(path: Path, level: QueryLevel) -> list[str]:
    """Return the unique identifiers to move from a resources CSV, in file order.

    Raises
    ------
    InvalidInputError
        When the file cannot be read or lacks the column the level needs.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"cannot read resources file {path}: {exc}") from exc
    column = "PatientID" if level is QueryLevel.PATIENT else "StudyInstanceUID"
    if len(columns) == 1:
        column = columns[0]
    elif column not in columns:
        raise InvalidInputError(f"resources file {path} has no {column} column")
    seen: dict[str, None] = {}
    for row in rows:
        value = (row.get(column) or "").strip()
        if value:
            seen.setdefault(value, None)
    return list(seen)


def write_resources(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Write find results as pacsanini does: its base fields, then the search fields."""
    columns = list(dict.fromkeys([*BASE_FIELDS, *fields]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})
