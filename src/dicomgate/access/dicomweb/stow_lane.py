"""STOW-RS requests answered in front of the application's routing (the STOW-RS lane).

A sender that stores one instance per request (many scripts and gateways do) pays the
framework for every instance: the middleware chain, matching the path against the mounted
routers, solving the endpoint's dependencies. That was about a sixth of a one-instance
request's CPU.

``StowLane`` is an ASGI middleware that takes the POST requests to ``/studies`` and
``/studies/{study}`` under the DICOMweb prefix and answers them with the same steps the
routes take: the caller is resolved by the coroutine the mount depends on, the request goes
to the same ``Stow.store``, and domain and HTTP errors become the same problem documents as
everywhere else (``api_errors``). It takes only requests whose parameters the routes would
take as they are (a study of at most 64 characters, at most one ``project`` of at most 64):
anything else goes on to the routes, which answer it as before (a validation error, say).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomgate.access.api_errors import domain_problem, http_problem
from dicomgate.access.dicomweb.search_lane import path_below
from dicomgate.auth.roles import Caller
from dicomgate.errors import DicomgateError
from dicomgate.sources.stow import Stow

CallerOf = Callable[[Request], Awaitable[Caller]]
_LONGEST = 64  # the routes' limit on the study in the path and on ``project``


def match_stow(path: str) -> tuple[str | None] | None:
    """Return ``(study,)`` when ``path`` (under the mount) is a STOW-RS target, else None.

    ``study`` is None for ``/studies``. A study longer than the routes accept is not taken.
    """
    if path == "/studies":
        return (None,)
    study = path.removeprefix("/studies/")
    if study == path or not study or "/" in study or len(study) > _LONGEST:
        return None
    return (study,)


def project_of(request: Request) -> tuple[str | None] | None:
    """Return ``(project,)`` as the routes read it, or None when the routes must judge it."""
    projects = request.query_params.getlist("project")
    if not projects:
        return (None,)
    if len(projects) > 1 or len(projects[0]) > _LONGEST:
        return None
    return (projects[0],)


class StowLane:
    """ASGI middleware answering STOW-RS POST requests under ``prefix`` (see the module).

    Parameters
    ----------
    app
        The application behind the lane.
    stow
        What takes the requests in (the routes' own).
    caller
        The coroutine that resolves the request's caller and leaves it on the request (the
        ``/dicomweb`` mount's dependency), raising when the request is unauthenticated.
    prefix
        Where DICOMweb is mounted.
    """

    def __init__(self, app: ASGIApp, stow: Stow, caller: CallerOf, prefix: str = "/dicomweb"):
        self.app = app
        self.stow = stow
        self.caller = caller
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a STOW-RS request, or pass the request on."""
        study = self._study_of(scope)
        project = None if study is None else project_of(Request(scope))
        if study is None or project is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            await self.caller(request)
            response: Response = await self.stow.store(request, *study, *project)
        except DicomgateError as exc:
            response = domain_problem(exc)
        except StarletteHTTPException as exc:
            response = http_problem(exc)
        await response(scope, receive, send)

    def _study_of(self, scope: Scope) -> tuple[str | None] | None:
        path = path_below(scope, "POST", self.prefix)
        return None if path is None else match_stow(path)
