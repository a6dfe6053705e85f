"""Index rows this process saw committed, so a study's next instance skips their upserts.

Series rows are never deleted, so a remembered series pk stays valid; a staging session may
have moved on (READY, ARCHIVED), which ``touch_staging_session`` detects. Entries are added
only after the commit that wrote them returned, and everything is forgotten when an index
write fails in a way a stale entry could explain.
"""

from __future__ import annotations

_LIMIT = 100_000


class KnownRows:
    """Series pks by Series Instance UID; RECEIVING staging pks by (source key, study UID).

    Plain dicts: a lookup or an update is atomic under the GIL, and a lost update only costs
    an upsert the next time.
    """

    def __init__(self) -> None:
        self.series: dict[str, int] = {}
        self.staging: dict[tuple[str, str], int] = {}

    def remember(self, series_uid: str, series_pk: int, staging: tuple[str, str], pk: int) -> None:
        """Record the rows an instance was committed under."""
        if len(self.series) + len(self.staging) > _LIMIT:
            self.forget()
        self.series[series_uid] = series_pk
        self.staging[staging] = pk

    def forget(self) -> None:
        """Drop every remembered row."""
        self.series.clear()
        self.staging.clear()
