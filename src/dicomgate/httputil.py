"""HTTP helpers with no business logic, shared by the sources and access edges."""

from __future__ import annotations

from starlette.requests import Request


def base_url(request: Request, public_url: str | None = None) -> str:
    """Return the absolute URL of the DICOMweb root the request came through.

    ``public_url`` (behind a proxy) wins; a Host header without a port (some clients send
    one) gets the port the server listens on.
    """
    if public_url:
        return public_url.rstrip("/")
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443):
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicomweb"
