"""For the processes dicomgate spawns: they never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> threading.Event:
    """End this process when ``parent`` ends: ``PR_SET_PDEATHSIG`` on Linux, and a watch.

    The watch thread checks the parent once a second (the only way elsewhere, and a guard
    for a parent that died before ``prctl`` took effect). Returns the watch's event.
    """
    with_parent = threading.Event()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watch below still ends the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while not with_parent.wait(1.0):
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return with_parent
