from __future__ import annotations

import pytest

from dicomgate.intake.origin import Origin, OriginKind

from .rt_builders import RtSession, build_rt_session


@pytest.fixture
def scanner_origin() -> Origin:
    return Origin(OriginKind.DIMSE, remote_ae="MR_SCANNER_1", called_ae="DICOMGATE")


@pytest.fixture
def rt_session() -> RtSession:
    return build_rt_session()
