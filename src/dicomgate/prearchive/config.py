"""The ``prearchive`` settings block: sorting protocol, required headers, RT hold time."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PrearchiveSettings(BaseModel):
    """Options of the prearchive review (``prearchive:`` in the config file).

    Parameters
    ----------
    protocol
        YAML sorting protocol; none means every session goes to its source's project (or the
        default project) after the project's checks.
    required_headers
        Attributes (keywords or tags) every instance must carry besides the four UIDs.
    rt_hold
        Seconds a session whose RT references do not resolve is held in ERROR, waiting for the
        referenced images; after that it is archived into QUARANTINE with the reason.
    """

    model_config = ConfigDict(extra="forbid")

    protocol: Path | None = None
    required_headers: list[str] = Field(default_factory=list)
    rt_hold: float = Field(default=3600.0, ge=0)

    @field_validator("required_headers")
    @classmethod
    def _known_attributes(cls, value: list[str]) -> list[str]:
        from dicomgate.rules.required import RequiredHeaders

        RequiredHeaders.from_config(value)
        return value
