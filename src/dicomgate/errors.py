"""The exception tree of dicomgate, and the one table that maps it to DIMSE and HTTP statuses.

::

    DicomgateError
    ├── ConfigError                 a setting, profile or protocol is invalid (fail at start)
    ├── NotFoundError               the resource does not exist (or the caller may not see it)
    ├── UnauthenticatedError        no valid credentials came with the request
    ├── ForbiddenError              the caller may see the resource but not do this to it
    ├── ConflictError               the request conflicts with the current state
    ├── InvalidInputError           bad input from outside: the client must fix it
    │   └── RejectedInstanceError   an instance that intake refuses (malformed, bad UID, ...)
    ├── StorageError                the archive could not make the data durable (retriable)
    │   └── StorageFullError        no space left
    └── PermanentError / RetriableError   job steps: never retried / retried with backoff

Only the edges (the DIMSE handlers, the HTTP exception handler) turn these into statuses.
"""

from __future__ import annotations


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


class InvalidInputError(DicomgateError):
    """Input from outside is malformed; the message says what to fix."""


class RejectedInstanceError(InvalidInputError):
    """Intake refused an instance; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StorageError(DicomgateError):
    """The archive could not make data durable; the caller may retry."""


class StorageFullError(StorageError):
    """The data folder or bucket has no space left."""


class RetriableError(DicomgateError):
    """A job step failed for a reason that may pass (network, lock, window closed)."""


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

_HTTP_STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404),
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (ConflictError, 409),
    (InvalidInputError, 400),
    (ConfigError, 400),
    (StorageFullError, 507),
    (StorageError, 503),
]


def dimse_store_status(exc: Exception) -> int:
    """Return the C-STORE failure status for an exception (0xC001 when unknown)."""
    for cls, status in _DIMSE_STORE_STATUS:
        if isinstance(exc, cls):
            return status
    return 0xC001  # Error: Processing failure


def http_status(exc: Exception) -> int:
    """Return the HTTP status for an exception (500 when unknown)."""
    for cls, status in _HTTP_STATUS:
        if isinstance(exc, cls):
            return status
    return 500
