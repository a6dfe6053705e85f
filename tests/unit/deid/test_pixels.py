from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from deid_builders import ct_slice, roundtrip
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage

from dicomgate.deid import DeidKeys, Profile, apply, burned_in_risk

MASK = {
    "manufacturer": "ACME",
    "model": "Scanner 64",
    "rows": 8,
    "columns": 8,
    "rectangles": [{"x": 0, "y": 0, "width": 8, "height": 2}],
}


def _us() -> Dataset:
    ds = ct_slice(0)
    ds.Modality = "US"
    return ds


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: setattr(d, "BurnedInAnnotation", "YES"), "BurnedInAnnotation YES"),
        (lambda d: setattr(d, "Modality", "US"), "Modality US"),
        (lambda d: setattr(d, "SOPClassUID", SecondaryCaptureImageStorage), "Secondary Capture"),
        (lambda d: None, None),
    ],
)
def test_burned_in_risk(change: Callable[[Dataset], None], reason: str | None) -> None:
    ds = ct_slice(0)
    change(ds)
    found = burned_in_risk(ds)
    assert found == reason or (reason is not None and found is not None and reason in found)


def test_modality_list_is_configurable() -> None:
    assert burned_in_risk(_us(), modalities=["XA"]) is None


def test_risk_without_mask_is_quarantined(basic: Profile, keys: DeidKeys) -> None:
    result = apply(_us(), basic, keys)
    assert result.dataset is None
    assert result.quarantine_reason is not None and "Modality US" in result.quarantine_reason


def test_risk_allowed_by_profile(make_profile: Callable[..., Profile], keys: DeidKeys) -> None:
    result = apply(_us(), make_profile(burned_in={"allow": True}), keys)
    assert result.dataset is not None and result.quarantine_reason is None


@pytest.mark.parametrize("compress", [False, True])
def test_mask_blanks_rectangles_and_reencodes(
    compress: bool, make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    src = _us()
    if compress:
        src.compress(RLELossless)
    result = apply(src, make_profile(pixel_masks=[MASK]), keys)
    assert result.dataset is not None
    out = roundtrip(result.dataset)
    pixels = out.pixel_array
    assert not pixels[:2].any() and pixels[2:].all()
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert any(c.action == "M" for c in result.changes)
    assert np.array_equal(src.pixel_array[2:], pixels[2:])
