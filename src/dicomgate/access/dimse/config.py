"""Settings of the DIMSE query/retrieve SCP: where C-MOVE may send, how much C-FIND returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def check_ae_title(value: str) -> str:
    """Return ``value`` when it is a valid AE title (1-16 ASCII characters, no backslash)."""
    if not value.strip() or len(value) > 16 or "\\" in value or not value.isascii():
        raise ValueError(f"invalid AE title {value!r}: 1-16 ASCII characters, no backslash")
    return value.strip()


class Destination(BaseModel):
    """A peer that C-MOVE may send to and Storage Commitment may report to.

    Parameters
    ----------
    ae_title
        The AE title the C-MOVE request names as Move Destination.
    host, port
        Where the peer's storage SCP listens.
    """

    model_config = ConfigDict(extra="forbid")

    ae_title: str
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)

    @field_validator("ae_title")
    @classmethod
    def _check_ae(cls, value: str) -> str:
        return check_ae_title(value)


class QueryRetrieveSettings(BaseModel):
    """Options of the C-FIND/C-MOVE/C-GET and Storage Commitment SCP (``query_retrieve:``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    destinations: list[Destination] = Field(default_factory=list)
    max_find_results: int = Field(default=10000, ge=1, le=1_000_000)
    commitment_report_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _unique_destinations(self) -> QueryRetrieveSettings:
        seen: set[str] = set()
        for destination in self.destinations:
            if destination.ae_title in seen:
                raise ValueError(f"destination {destination.ae_title!r} is listed twice")
            seen.add(destination.ae_title)
        return self

    def destination(self, ae_title: str) -> Destination | None:
        """Return the destination configured for ``ae_title`` (exact, blanks stripped)."""
        wanted = ae_title.strip()
        return next((d for d in self.destinations if d.ae_title == wanted), None)
