"""QIDO-RS searches answered in front of the application's routing (the search lane).

A viewer opening a worklist sends many small searches; the index answers each in a few
tenths of a millisecond. Through FastAPI, a search paid more than that again around it: the
middleware chain, matching the path against the mounted routers, solving the endpoint's
dependencies, anyio's hop to a worker thread (capacity limiter, cancel scopes) and the chain
again on the way out.

``SearchLane`` is an ASGI middleware that takes the GET requests of the six QIDO-RS paths
and answers them itself, with the same steps the routes take: the caller is resolved by the
same coroutine the ``/dicomweb`` mount depends on, the search runs in ``router.qido`` on a
worker thread, and domain and HTTP errors become the same problem documents as everywhere
else (``api_errors``). Every other request, STOW-RS's POST to ``/studies`` included, goes
on to the application untouched. The routes stay registered: they document the searches in
the OpenAPI description and answer them where the lane is not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from fastapi import Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomgate.access.api_errors import domain_problem, http_problem
from dicomgate.access.dicomweb.attributes import Level
from dicomgate.access.dicomweb.context import Context
from dicomgate.access.dicomweb.router import qido, within_path
from dicomgate.auth.roles import Caller
from dicomgate.errors import DicomgateError

CallerOf = Callable[[Request], Awaitable[Caller]]

# The searches of the QIDO-RS paths, by the path's segments with each UID replaced by "*".
_SEARCHES: dict[tuple[str, ...], Level] = {
    ("studies",): Level.STUDY,
    ("series",): Level.SERIES,
    ("instances",): Level.INSTANCE,
    ("studies", "*", "series"): Level.SERIES,
    ("studies", "*", "instances"): Level.INSTANCE,
    ("studies", "*", "series", "*", "instances"): Level.INSTANCE,
}


def match_search(path: str) -> tuple[Level, list[str]] | None:
    """Return the level and the path's UIDs when ``path`` (under the mount) is a search.

    Parameters
    ----------
    path
        The request path below the DICOMweb prefix, such as ``/studies/1.2.3/series``.
    """
    if not path.startswith("/"):
        return None
    segments = path[1:].split("/")
    if not all(segments):  # an empty segment matches no route (Starlette's "[^/]+")
        return None
    level = _SEARCHES.get(tuple("*" if i % 2 else s for i, s in enumerate(segments)))
    uids = segments[1::2]
    return None if level is None else (level, uids)


def path_below(scope: Scope, method: str, prefix: str) -> str | None:
    """Return the path below ``prefix`` of an HTTP ``method`` request, else None.

    The path is the request's own, without the application's ``root_path``.
    """
    if scope["type"] != "http" or scope["method"] != method:
        return None
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path[len(prefix) :] if path.startswith(prefix) else None


class SearchLane:
    """ASGI middleware answering QIDO-RS GET requests under ``prefix`` (see the module).

    Parameters
    ----------
    app
        The application behind the lane.
    ctx
        What the searches read and where they are audited.
    caller
        The coroutine that resolves the request's caller and leaves it on the request (the
        ``/dicomweb`` mount's dependency), raising when the request is unauthenticated.
    prefix
        Where DICOMweb is mounted.
    threads
        The worker threads that run searches.
    """

    def __init__(
        self,
        app: ASGIApp,
        ctx: Context,
        caller: CallerOf,
        prefix: str = "/dicomweb",
        threads: int = 16,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.caller = caller
        self.prefix = prefix
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="qido")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a search, or pass the request on."""
        search = self._search_of(scope)
        if search is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self._answer(request, *search)
        except DicomgateError as exc:
            response = domain_problem(exc)
        except StarletteHTTPException as exc:
            response = http_problem(exc)
        await response(scope, receive, send)

    def _search_of(self, scope: Scope) -> tuple[Level, list[str]] | None:
        path = path_below(scope, "GET", self.prefix)
        return None if path is None else match_search(path)

    async def _answer(self, request: Request, level: Level, uids: list[str]) -> Response:
        await self.caller(request)
        within = within_path(*uids)
        work = partial(qido, self.ctx, request, level, within)
        return await asyncio.get_running_loop().run_in_executor(self.pool, work)
