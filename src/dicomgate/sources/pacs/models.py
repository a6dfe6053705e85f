"""Index table of the PACS source: every C-MOVE / C-GET request with its sub-operation counts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import PK, UID, Base, utcnow


class RetrieveRequest(Base):
    """One retrieve request sent to a remote node, as the node answered it."""

    __tablename__ = "pacs_retrieve_requests"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    job_id: Mapped[str | None] = mapped_column(String(64), index=True)
    node: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(16))
    series_uid: Mapped[str | None] = mapped_column(UID)
    status: Mapped[str] = mapped_column(String(8))
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    warning: Mapped[int] = mapped_column(Integer, default=0)
    remaining: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
