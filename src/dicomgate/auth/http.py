"""Who is calling over HTTP: bearer tokens (API or OIDC), basic credentials, session cookies.

``Authenticator.caller(request)`` is the one place that turns a request into a ``Caller``;
routers depend on it through ``caller_dependency(authenticator)``. With authentication
disabled (allowed on loopback only, see ``check_exposure``) every request is the open caller.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from dicomgate.auth import credentials, users
from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome
from dicomgate.auth.oidc import OidcVerifier, looks_like_jwt
from dicomgate.auth.roles import OPEN_CALLER, Caller
from dicomgate.auth.settings import AuthSettings
from dicomgate.db import Database
from dicomgate.errors import ConfigError, NotFoundError, UnauthenticatedError

log = logging.getLogger(__name__)

SESSION_COOKIE = "dicomgate_session"


def client_address(request: Request) -> str:
    """Return the peer address of a request ('' when unknown)."""
    return request.client.host if request.client else ""


class Authenticator:
    """Resolves the caller of each request and records failed attempts.

    Parameters
    ----------
    settings
        The ``auth`` options.
    db
        The index database (users, tokens, sessions).
    audit
        The audit trail.
    """

    def __init__(self, settings: AuthSettings, db: Database, audit: AuditTrail) -> None:
        self.settings = settings
        self.db = db
        self.audit = audit
        self.oidc = OidcVerifier(settings.oidc) if settings.oidc else None

    def caller(self, request: Request) -> Caller:
        """Return the request's caller.

        Raises
        ------
        UnauthenticatedError
            When no credentials came, or they are invalid, expired or revoked.
        """
        if not self.settings.enabled:
            return OPEN_CALLER
        try:
            return self._resolve(request)
        except UnauthenticatedError as exc:
            self.audit.record(
                AuditEvent.USER_AUTHENTICATION,
                "login",
                actor="unknown",
                source=client_address(request),
                outcome=Outcome.MINOR_FAILURE,
                detail=str(exc),
            )
            raise

    def _resolve(self, request: Request) -> Caller:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return self._bearer(value.strip())
        if scheme == "basic" and value:
            return self._basic(value.strip())
        if scheme:
            raise UnauthenticatedError("unsupported Authorization scheme")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            with self.db.reader() as session:
                try:
                    return credentials.caller_from_web_session(session, cookie)
                except NotFoundError:
                    raise UnauthenticatedError("session expired; log in again") from None
        raise UnauthenticatedError("authentication required")

    def _bearer(self, token: str) -> Caller:
        if token.startswith(credentials.TOKEN_PREFIX):
            with self.db.reader() as session:
                try:
                    return credentials.caller_from_token(session, token)
                except NotFoundError as exc:
                    raise UnauthenticatedError(str(exc)) from None
        if self.oidc is not None and looks_like_jwt(token):
            return self.oidc.caller(token)
        raise UnauthenticatedError("unknown token")

    def _basic(self, value: str) -> Caller:
        try:
            name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UnauthenticatedError("malformed basic credentials") from None
        with self.db.reader() as session:
            user = users.authenticate(session, name, password)
            if user is None:
                raise UnauthenticatedError("wrong user name or password")
            return users.caller_for(session, user, "basic")


def caller_dependency(authenticator: Authenticator) -> Callable[[Request], Caller]:
    """Return a FastAPI dependency yielding the request's caller (cached per request)."""

    def current_caller(request: Request) -> Caller:
        cached = getattr(request.state, "caller", None)
        if isinstance(cached, Caller):
            return cached
        caller = authenticator.caller(request)
        request.state.caller = caller
        return caller

    return current_caller


def async_caller_dependency(
    authenticator: Authenticator,
) -> Callable[[Request], Awaitable[Caller]]:
    """Return ``caller_dependency`` as a coroutine, for routes answered in microseconds.

    FastAPI runs a plain function dependency on a worker thread, a hop that costs a
    DICOMweb search about as much as its query. Credentials are still checked on a worker
    thread (they read the index); only a caller that needs no lookup (cached on the request,
    or authentication disabled) is returned on the event loop.
    """
    resolve = caller_dependency(authenticator)

    async def current_caller(request: Request) -> Caller:
        cached = getattr(request.state, "caller", None)
        if isinstance(cached, Caller):
            return cached
        if not authenticator.settings.enabled:
            request.state.caller = OPEN_CALLER
            return OPEN_CALLER
        return await run_in_threadpool(resolve, request)

    return current_caller


def open_dependency(_request: Request) -> Caller:
    """Return the open caller (for services composed with authentication disabled)."""
    return OPEN_CALLER


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(enabled: bool, hosts: list[str]) -> None:
    """Refuse to listen beyond loopback without authentication.

    Raises
    ------
    ConfigError
        When authentication is disabled and a listener binds a non-loopback address.
    """
    exposed = [h for h in hosts if not _is_loopback(h)]
    if not enabled and exposed:
        raise ConfigError(
            f"auth.enabled: authentication is off but {', '.join(exposed)} is not loopback; "
            "enable authentication or listen on 127.0.0.1"
        )
