"""Where an instance came from: the typed record every source hands to intake."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class OriginKind(enum.StrEnum):
    """The kind of source that brought an instance in."""

    DIMSE = "dimse"
    FOLDER = "folder"
    INBOX = "inbox"
    UPLOAD = "upload"
    STOW = "stow"
    PACS = "pacs"
    DICOMDIR = "dicomdir"
    IMPORT = "import"


@dataclass(frozen=True, slots=True)
class Origin:
    """The provenance of one received instance.

    Parameters
    ----------
    kind
        Which source brought the instance in.
    remote_ae
        Calling AE title of the peer (DIMSE sources only).
    called_ae
        The AE title the peer called us by (DIMSE sources only).
    remote_host
        IP address of the peer, when there is one.
    user
        Internal id of the user on whose behalf the instance arrived.
    job_id
        Id of the job that brought the instance in, when one did.
    import_path
        The folder or file an import read it from (never shown to peers).
    project
        Project the source is configured to deliver to, if any.
    subject_label, session_label
        Labels the sender gave (server-side inbox, XNAT import form); they override the
        labels the header mapping would derive. Kept on the staging session's origin JSON.
    confirmed_identity
        The identity an operator confirmed for this import (``first_name``, ``last_name``,
        ``birth_name``, ``birth_date``, ``sex``): checked against the headers before
        de-identification (``identity_mismatch``). PHI: never logged.
    """

    kind: OriginKind
    remote_ae: str | None = None
    called_ae: str | None = None
    remote_host: str | None = None
    user: str | None = None
    job_id: str | None = None
    import_path: str | None = None
    project: str | None = None
    subject_label: str | None = None
    session_label: str | None = None
    confirmed_identity: dict[str, str] | None = field(default=None, hash=False)

    @property
    def source_key(self) -> str:
        """Identify the source stream that groups instances into one staging session."""
        if self.job_id:
            return f"{self.kind}:job:{self.job_id}"
        if self.kind is OriginKind.DIMSE:
            peer = f"{self.remote_ae or ''}@{self.remote_host or ''}"
            return f"{self.kind}:{peer}>{self.called_ae or ''}"
        return f"{self.kind}:{self.user or ''}"
