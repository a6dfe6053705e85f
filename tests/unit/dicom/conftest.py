"""Fixtures for the DICOM helpers' tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


@pytest.fixture()
def echo_port() -> Iterator[int]:
    """A pynetdicom Verification SCP (pynetdicom's own threads) on a free loopback port."""
    scp = AE(ae_title="ECHOSCP")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    yield int(server.server_address[1])
    server.shutdown()
