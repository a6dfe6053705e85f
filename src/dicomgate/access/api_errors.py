"""RFC 9457 problem documents for domain errors, validation errors and HTTP errors."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dicomgate.errors import DicomgateError, http_status

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, **extra: object) -> JSONResponse:
    """Return an ``application/problem+json`` response.

    Parameters
    ----------
    status
        The HTTP status code.
    detail
        A human-readable explanation specific to this occurrence (no PHI).
    **extra
        Extension members added to the document.
    """
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def domain_problem(exc: Exception) -> JSONResponse:
    """Return the problem document of a domain error (no message for an internal error)."""
    status = http_status(exc)
    if status >= 500:
        # Only the class name is logged: messages may quote data from the request.
        log.warning("request failed with %s (%d)", type(exc).__name__, status)
        if status == 500:
            return problem(status, "internal error")
    response = problem(status, str(exc))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="dicomgate"'
    return response


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    return domain_problem(exc)


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts[1:] if len(parts) > 1 and parts[0] in ("query", "path") else parts)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"parameter": _location(tuple(err.get("loc", ()))), "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['parameter']}: {e['message']}" for e in errors)
    return problem(400, detail or "invalid request", errors=errors)


def http_problem(exc: StarletteHTTPException) -> JSONResponse:
    """Return the problem document of an HTTP error, with the headers it carries."""
    response = problem(exc.status_code, str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_problem(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer domain, validation and HTTP errors of ``app`` with RFC 9457 problem documents.

    Parameters
    ----------
    app
        The application to configure.
    """
    app.add_exception_handler(DicomgateError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
