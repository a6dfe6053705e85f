"""Index rows this process saw committed, so a study's next instance skips their upserts.

A remembered series can be deleted (a prearchive delete, the purge of an original after
de-identification); the next write under it then fails its foreign key, and intake forgets
every entry and writes once more. A staging session may have moved on (READY, ARCHIVED),
which ``touch_staging_session`` detects. Entries are added only after the commit that wrote
them returned.
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
