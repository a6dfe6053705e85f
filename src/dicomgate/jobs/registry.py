"""The one registry mapping a job kind to its handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dicomgate.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from dicomgate.jobs.context import JobContext

Handler = Callable[["JobContext"], None]

_HANDLERS: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``kind``.

    Parameters
    ----------
    kind
        The job kind (``[a-z0-9_]``), e.g. ``import_files``.

    Raises
    ------
    ConfigError
        When another function is already registered for ``kind``.
    """

    def decorate(handler: Handler) -> Handler:
        known = _HANDLERS.get(kind)
        if known is not None and known is not handler:
            same = (known.__module__, known.__qualname__) == (
                handler.__module__,
                handler.__qualname__,
            )
            if not same:
                raise ConfigError(f"job kind {kind!r} is already registered")
        _HANDLERS[kind] = handler
        return handler

    return decorate


def handler_for(kind: str) -> Handler:
    """Return the handler of ``kind``.

    Raises
    ------
    NotFoundError
        When no handler is registered for ``kind``.
    """
    try:
        return _HANDLERS[kind]
    except KeyError:
        raise NotFoundError(f"no job kind {kind!r}") from None


def kinds() -> list[str]:
    """Return the registered kinds, sorted."""
    return sorted(_HANDLERS)
