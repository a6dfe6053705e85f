"""HTTP routes of authentication: login/logout/me, the caller's API tokens, the audit trail."""

# No `from __future__ import annotations`: FastAPI must evaluate the route annotations, which
# name the caller dependency of the enclosing factory function.

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from dicomgate.archive.models import utcnow
from dicomgate.auth import credentials, users
from dicomgate.auth.audit import AuditEvent, AuditRecord, Outcome
from dicomgate.auth.audit_xml import to_audit_message
from dicomgate.auth.http import SESSION_COOKIE, Authenticator, client_address
from dicomgate.auth.roles import Caller, Permission
from dicomgate.errors import ConflictError, InvalidInputError, UnauthenticatedError

_MEANINGS = {event.code: event.meaning for event in AuditEvent}


class LoginIn(BaseModel):
    """Credentials for a browser login."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class CallerOut(BaseModel):
    """Who the caller is and what they hold."""

    name: str
    is_admin: bool
    can_reidentify: bool
    roles: dict[str, str]
    via: str


class TokenIn(BaseModel):
    """A token request: optional label, project and permission scope, lifetime."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=128)
    projects: list[str] | None = None
    permissions: list[Permission] | None = None
    expires_in_days: float | None = Field(default=90, gt=0, le=3650)


class TokenCreated(BaseModel):
    """A new token: the secret is shown this once."""

    id: int
    token: str
    expires_at: dt.datetime | None


def _caller_out(caller: Caller) -> CallerOut:
    roles = {p: r.value for p, r in caller.roles.items()}
    return CallerOut(
        name=caller.name,
        is_admin=caller.is_admin,
        can_reidentify=caller.can_reidentify,
        roles=roles,
        via=caller.via,
    )


def create_auth_router(auth: Authenticator, current: Callable[[Request], Caller]) -> APIRouter:
    """Return the router of ``/api/auth`` and ``/api/audit``."""
    router = APIRouter(prefix="/api", tags=["auth"])

    @router.post("/auth/login", response_model=CallerOut)
    def login(body: LoginIn, request: Request, response: Response) -> CallerOut:
        """Check a user name and password; set the session cookie."""
        source = client_address(request)
        with auth.db.unit_of_work() as session:
            user = users.authenticate(session, body.username, body.password)
            cookie = None
            if user is not None:
                ttl = dt.timedelta(hours=auth.settings.session_hours)
                cookie = credentials.open_web_session(session, user, ttl)
                caller = users.caller_for(session, user, "session")
        outcome = Outcome.SUCCESS if cookie else Outcome.MINOR_FAILURE
        actor = body.username if cookie else "unknown"
        auth.audit.record(
            AuditEvent.USER_AUTHENTICATION, "login", actor=actor, source=source, outcome=outcome
        )
        if cookie is None:
            raise UnauthenticatedError("wrong user name or password")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(auth.settings.session_hours * 3600),
            httponly=True,
            secure=auth.settings.cookie_secure,
            samesite="strict",
        )
        return _caller_out(caller)

    @router.post("/auth/logout", status_code=204)
    def logout(request: Request, response: Response) -> None:
        """End the browser session."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            with auth.db.unit_of_work() as session:
                credentials.close_web_session(session, cookie)
        response.delete_cookie(SESSION_COOKIE)

    @router.get("/auth/me", response_model=CallerOut)
    def me(caller: Annotated[Caller, Depends(current)]) -> CallerOut:
        """Return the caller."""
        return _caller_out(caller)

    _token_routes(router, auth, current)
    _audit_routes(router, auth, current)
    return router


def _token_routes(
    router: APIRouter, auth: Authenticator, current: Callable[[Request], Caller]
) -> None:
    @router.post("/auth/tokens", response_model=TokenCreated, status_code=201)
    def create_token(body: TokenIn, caller: Annotated[Caller, Depends(current)]) -> TokenCreated:
        """Create an API token for the caller, narrowed to the given scope."""
        if caller.via in ("token", "open"):
            raise ConflictError("create tokens with your password or OIDC login, not a token")
        for project in body.projects or []:
            caller.require(Permission.READ, project)
        days = body.expires_in_days
        expires = utcnow() + dt.timedelta(days=days) if days else None
        with auth.db.unit_of_work() as session:
            secret = credentials.create_token(
                session,
                caller.name,
                label=body.label,
                projects=body.projects,
                permissions=body.permissions,
                expires_at=expires,
            )
            token_id = credentials.list_tokens(session, caller.name)[-1].id
        return TokenCreated(id=token_id, token=secret, expires_at=expires)

    @router.get("/auth/tokens")
    def list_tokens(caller: Annotated[Caller, Depends(current)]) -> list[dict[str, object]]:
        """List the caller's tokens (never their secrets)."""
        with auth.db.reader() as session:
            return [_token_json(t) for t in credentials.list_tokens(session, caller.name)]

    @router.delete("/auth/tokens/{token_id}", status_code=204)
    def revoke(token_id: int, caller: Annotated[Caller, Depends(current)]) -> None:
        """Revoke one of the caller's tokens."""
        with auth.db.unit_of_work() as session:
            credentials.revoke_token(session, caller.name, token_id)


def _token_json(token: credentials.TokenOut) -> dict[str, object]:
    return {
        "id": token.id,
        "label": token.label,
        "projects": token.projects,
        "permissions": token.permissions,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked": token.revoked,
    }


def _lines(records: list[AuditRecord], fmt: str) -> Iterator[str]:
    for record in records:
        if fmt == "xml":
            yield to_audit_message(record, _MEANINGS.get(record.event_code, "")) + "\n"
        else:
            yield json.dumps(record.to_json(), sort_keys=True) + "\n"


def _audit_routes(
    router: APIRouter, auth: Authenticator, current: Callable[[Request], Caller]
) -> None:
    @router.get("/audit")
    def audit(
        caller: Annotated[Caller, Depends(current)],
        since: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
        action: Annotated[str | None, Query(max_length=64)] = None,
        fmt: Annotated[Literal["jsonl", "xml"], Query(alias="format")] = "jsonl",
    ) -> StreamingResponse:
        """Return audit records after ``since`` as JSON lines or DICOM audit messages."""
        caller.require(Permission.ADMIN)
        if action is not None and not action.replace("_", "").isalnum():
            raise InvalidInputError("action is a word such as import or login")
        records = auth.audit.records(since, limit, action)
        media = "application/xml" if fmt == "xml" else "application/x-ndjson"
        return StreamingResponse(_lines(records, fmt), media_type=media)
