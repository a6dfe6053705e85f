"""Fixtures of the source tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dicomgate.sources import import_processes


@pytest.fixture()
def two_processes() -> Iterator[None]:
    """Two import processes for any import of 10 files or more; the default again after."""
    import_processes.configure(2, 10)
    yield
    import_processes.configure(0, 1000)
    import_processes.shutdown()
