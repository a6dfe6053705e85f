"""For the processes dicomgate spawns: they never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import threading

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, started_by_lasting_thread: bool = True) -> threading.Event:
    """End this process when ``parent`` ends: ``PR_SET_PDEATHSIG`` on Linux, and a watch.

    The watch thread checks the parent once a second (the only way elsewhere, and a guard
    for a parent that died before ``prctl`` took effect). Returns the watch's event.

    Linux sends the death signal when the *thread* that started this process ends, not its
    process: a child started from a short-lived thread (a pool that spawns its processes on
    the thread of whichever call needs one) passes ``started_by_lasting_thread=False`` and is
    ended by the watch alone.
    """
    with_parent = threading.Event()
    if started_by_lasting_thread:
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
