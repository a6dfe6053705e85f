"""The exception tree of dicomgate, and the one table that maps it to DIMSE and HTTP statuses.

::

    DicomgateError
    ├── ConfigError                 a setting, profile or protocol is invalid (fail at start)
    ├── NotFoundError               the resource does not exist (or the caller may not see it)
    ├── UnauthenticatedError        no valid credentials came with the request
    ├── ForbiddenError              the caller may see the resource but not do this to it
    │   └── PermissionDeniedError   the caller lacks a named permission (e.g. reidentify)
    ├── ConflictError               the request conflicts with the current state
    │   └── HeldForReviewError      archiving stopped: the session is held with a reason
    ├── NotAcceptableError          no representation the client accepts can be produced
    ├── InvalidInputError           bad input from outside: the client must fix it
    │   ├── RejectedInstanceError   an instance that intake refuses (malformed, bad UID, ...)
    │   ├── TooManyMatchesError     a query matches more than the configured maximum
    │   ├── UnsupportedMediaTypeError   a request body of a media type not taken
    │   └── PayloadTooLargeError    a request body over the configured limit
    ├── StorageError                the archive could not make the data durable (retriable)
    │   └── StorageFullError        no space left
    └── PermanentError / RetriableError   job steps: never retried / retried with backoff
            └── RemoteNodeError       a remote node refused, aborted or timed out (retriable)
                └── WindowClosedError the node's time window is closed; ``resume_at`` says until

Only the edges (the DIMSE handlers, the HTTP exception handler) turn these into statuses.
"""

from __future__ import annotations

from datetime import datetime


class DicomgateError(Exception):
    """Base of every domain error raised by dicomgate."""


class ConfigError(DicomgateError):
    """A configuration value is unknown or invalid; the message names the key."""


class NotFoundError(DicomgateError):
    """The resource does not exist, or the caller may not know that it does."""


class UnauthenticatedError(DicomgateError):
    """The request carries no valid credentials (missing, expired, revoked, malformed)."""


class ForbiddenError(DicomgateError):
    """The caller may see the resource but lacks the permission for this action."""


class ConflictError(DicomgateError):
    """The request conflicts with the current state of the resource."""


class HeldForReviewError(ConflictError):
    """Archiving stopped and the staging session was held (status and reason recorded).

    Raised by ``pipeline.archive_session`` when de-identification finds that a person must
    decide (``identity_mismatch``) or that it cannot proceed (no pseudonym, broken references).
    """

    def __init__(self, status: str, reason: dict[str, object]) -> None:
        super().__init__(str(reason.get("message", "the session is held for review")))
        self.status = status
        self.reason = reason


class PermissionDeniedError(ForbiddenError):
    """The caller is known but lacks the permission the action needs."""


class InvalidInputError(DicomgateError):
    """Input from outside is malformed; the message says what to fix."""


class RejectedInstanceError(InvalidInputError):
    """Intake refused an instance; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TooManyMatchesError(InvalidInputError):
    """A query matches more records than the configured maximum: the client must narrow it."""


class NotAcceptableError(DicomgateError):
    """Nothing the client accepts (HTTP Accept) can be produced; the message says what can."""


class UnsupportedMediaTypeError(InvalidInputError):
    """The request body is of a media type this endpoint does not take."""


class PayloadTooLargeError(InvalidInputError):
    """The request body exceeds the configured limit."""


class StorageError(DicomgateError):
    """The archive could not make data durable; the caller may retry."""


class StorageFullError(StorageError):
    """The data folder or bucket has no space left."""


class RetriableError(DicomgateError):
    """A job step failed for a reason that may pass (network, lock, window closed)."""


class RemoteNodeError(RetriableError):
    """A remote DICOM node refused, aborted or timed out; the message says which (no PHI)."""


class WindowClosedError(RemoteNodeError):
    """Traffic to a remote node is outside its time window until ``resume_at`` (UTC)."""

    def __init__(self, node: str, resume_at: datetime) -> None:
        super().__init__(f"node {node}: outside its time window until {resume_at.isoformat()}")
        self.node = node
        self.resume_at = resume_at


class PermanentError(DicomgateError):
    """A job step failed for a reason that retrying will not change."""


# DIMSE C-STORE statuses (PS3.4 B.2.3) for each error; the first matching class wins.
_DIMSE_STORE_STATUS: list[tuple[type[Exception], int]] = [
    (StorageFullError, 0xA700),  # Refused: Out of Resources
    (ForbiddenError, 0x0124),  # Refused: Not Authorized (PS3.7 C.5.x)
    (RejectedInstanceError, 0xC000),  # Error: Cannot understand
    (InvalidInputError, 0xA900),  # Error: Data Set does not match SOP Class
    (ConflictError, 0xA900),
    (StorageError, 0xA700),
]

# DIMSE C-FIND/C-MOVE/C-GET statuses (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4) for a request
# refused before any match or sub-operation.
_DIMSE_QUERY_STATUS: list[tuple[type[Exception], int]] = [
    (TooManyMatchesError, 0xA700),  # Refused: Out of Resources
    (InvalidInputError, 0xA900),  # Identifier does not match SOP Class
    (StorageError, 0xA700),
]

_HTTP_STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404),
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (NotAcceptableError, 406),
    (UnsupportedMediaTypeError, 415),
    (ConflictError, 409),
    (PayloadTooLargeError, 413),
    (InvalidInputError, 400),
    (ConfigError, 400),
    (StorageFullError, 507),
    (StorageError, 503),
    (WindowClosedError, 503),
    (RemoteNodeError, 502),
]


def dimse_store_status(exc: Exception) -> int:
    """Return the C-STORE failure status for an exception (0xC001 when unknown)."""
    for cls, status in _DIMSE_STORE_STATUS:
        if isinstance(exc, cls):
            return status
    return 0xC001  # Error: Processing failure


def dimse_query_status(exc: Exception) -> int:
    """Return the C-FIND/C-MOVE/C-GET failure status for an exception (0xC000 when unknown)."""
    for cls, status in _DIMSE_QUERY_STATUS:
        if isinstance(exc, cls):
            return status
    return 0xC000  # Failed: Unable to process


def http_status(exc: Exception) -> int:
    """Return the HTTP status for an exception (500 when unknown)."""
    for cls, status in _HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500
