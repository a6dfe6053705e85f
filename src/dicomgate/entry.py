"""The ``dicomgate`` command's entry point: imports the CLI only when called.

The generated console script imports its entry point at the top, and a process started with
multiprocessing's "spawn" runs that script again (as ``__mp_main__``) before its task. With
``dicomgate.cli:app`` as the entry point every import process or receiver worker loaded the
whole CLI first (about 1.2 s of imports); this module costs nothing.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run the ``dicomgate`` command line.

    The cyclic garbage collector is off while the CLI's modules are imported: they allocate
    hundreds of thousands of objects, none of them garbage, and the collections that
    triggered walked them again and again (a fifth of the import time). What was imported is
    then frozen out of later collections.
    """
    gc.disable()
    try:
        from dicomgate.cli import app
    finally:
        gc.freeze()
        gc.enable()
    app()
