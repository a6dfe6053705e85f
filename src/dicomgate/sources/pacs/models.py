"""Index tables of the PACS source: retrieve requests with their counts, C-MOVEs in flight."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import NEVER_REUSE_PKS, PK, UID, Base, utcnow


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


class MoveInFlight(Base):
    """A C-MOVE we sent, so that any receiving process attributes its C-STOREs (``moves``).

    ``(originator_ae, message_id)`` is what each C-STORE of the move carries. A row stays
    after the move ended (``ended_at``) until its message id may be reused.
    """

    __tablename__ = "pacs_moves_in_flight"
    __table_args__ = (UniqueConstraint("originator_ae", "message_id"), NEVER_REUSE_PKS)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    originator_ae: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int] = mapped_column(Integer)
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
