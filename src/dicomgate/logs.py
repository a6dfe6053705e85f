"""Logging set-up that keeps PHI out of the logs.

Query strings carry search values (patient names, IDs, birth dates), so the HTTP access log
keeps only the path: ``GET /api/studies?PatientID=...`` is logged as ``GET /api/studies?…``.
"""

from __future__ import annotations

import logging


class RedactQueryStrings(logging.Filter):
    """Cut the query string out of uvicorn access-log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's path argument; always keep the record."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path, sep, _query = args[2].partition("?")
            if sep:
                record.args = (*args[:2], f"{path}?…", *args[3:])
        return True


def configure(level: str) -> None:
    """Configure the root logger and redact the access log."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("uvicorn.access").addFilter(RedactQueryStrings())
