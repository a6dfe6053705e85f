"""DICOMweb's own tables: prepared DICOM JSON per instance and the preparer's position.

Both hold data derived from the archive (rebuilt from the stored files at any time); neither is
part of the archive itself.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import PK, Base, utcnow


class InstanceMetadata(Base):
    """The DICOM JSON of one instance with bulk data URIs (relative, ``{+base}`` prefixed)."""

    __tablename__ = "dicomweb_instance_metadata"
    instance_pk: Mapped[int] = mapped_column(
        PK, ForeignKey("instances.pk", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    json: Mapped[str] = mapped_column(Text)
    prepared_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FollowerPosition(Base):
    """How far a follower of the change log got (``since=<seq>`` after a restart)."""

    __tablename__ = "dicomweb_follower"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
