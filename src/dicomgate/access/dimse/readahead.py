"""Read the next instances of a retrieve while the current one is on the wire.

A C-MOVE/C-GET sends strictly one instance after the other; reading blob N+1 (open, read,
parse the meta header) on a helper thread while the peer stores blob N hides the storage
latency. The window is bounded by count and by bytes so a study of large multi-frame
instances does not fill memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from dicomgate.access.dimse.queries import StoredInstance

_T = TypeVar("_T")
MAX_AHEAD = 16
MAX_AHEAD_BYTES = 64 * 1024 * 1024


def read_ahead(
    items: Sequence[StoredInstance], read: Callable[[StoredInstance], _T]
) -> Iterator[_T]:
    """Yield ``read(item)`` for each item in order, reading a bounded window ahead."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dimse-read") as pool:
        window: deque[tuple[int, Future[_T]]] = deque()
        queued = 0
        position = 0
        while position < len(items) or window:
            while (
                position < len(items)
                and len(window) < MAX_AHEAD
                and (not window or queued + items[position].size <= MAX_AHEAD_BYTES)
            ):
                item = items[position]
                window.append((item.size, pool.submit(read, item)))
                queued += item.size
                position += 1
            size, future = window.popleft()
            queued -= size
            yield future.result()
