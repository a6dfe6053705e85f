"""HTTP helpers with no business logic, shared by the sources and access edges."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request


def base_url(request: Request, public_url: str | None = None) -> str:
    """Return the absolute URL of the DICOMweb root the request came through.

    ``public_url`` (behind a proxy) wins; a Host header without a port (some clients send
    one) gets the port the server listens on.
    """
    if public_url:
        return public_url.rstrip("/")
    scope = request.scope
    server = scope.get("server")
    root_path = scope.get("app_root_path", scope.get("root_path", ""))
    host = request.headers.get("host")
    return _base_url(scope.get("scheme", "http"), host, tuple(server or ()), root_path)


@lru_cache(maxsize=64)
def _base_url(scheme: str, host: str | None, server: tuple[Any, ...], root_path: str) -> str:
    # Cached: Starlette's URL parsing was a twentieth of a QIDO search's time; a client's
    # Host header only chooses which entry, and a bounded number of them is kept.
    headers = [(b"host", host.encode("latin-1"))] if host is not None else []
    scope = {"type": "http", "scheme": scheme, "server": server or None, "path": root_path}
    url = Request({**scope, "headers": headers, "root_path": root_path}).base_url
    if url.port is None and server and server[1] not in (80, 443):
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicomweb"


def document_mounted(app: FastAPI, prefix: str, router: APIRouter) -> None:
    """Add the routes of ``router``, mounted at ``prefix``, to the OpenAPI document of ``app``.

    FastAPI documents the routes it includes, not those behind a mount; the document is built
    once, on the first request for it, from the application's routes and these.
    """
    documented = APIRouter()
    documented.include_router(router, prefix=prefix)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=[*app.routes, *documented.routes],
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
