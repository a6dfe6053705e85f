"""Property-based checks over generated datasets (names, IDs, UIDs, dates, sequences, privates)."""

from __future__ import annotations

import datetime as dt

from deid_builders import SECRET_A, to_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomgate.deid import DeidKeys, apply, load_profile, remap_uid, verify_dataset
from dicomgate.deid.plan import compile_plan
from dicomgate.deid.values import DUMMIES

PROFILE = load_profile({})
PLAN = compile_plan(PROFILE)
KEYS = DeidKeys(SECRET_A, "SUBJ-0001", date_offset_days=-7)

names = st.text("ABCDEFGHJKLMNPRSTUVWXY", min_size=5, max_size=10).map(lambda s: "ZQX" + s)
ids = st.text("ABCDEFGHJKLMNPRSTUVWXY0123456789", min_size=4, max_size=10).map(lambda s: "PIDQ" + s)
uids = st.lists(st.integers(1, 99999), min_size=2, max_size=5).map(
    lambda parts: "1.2.826.0.1.3680043.9999." + ".".join(map(str, parts))
)
dates = st.one_of(
    st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)).map(lambda d: d.strftime("%Y%m%d")),
    st.sampled_from(["2020", "20201301", ""]),
)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[Dataset, set[str]]:
    secrets: set[str] = set()

    def secret(strategy: st.SearchStrategy[str]) -> str:
        value = draw(strategy)
        secrets.add(value)
        return value

    ds = Dataset()
    ds.PatientName = f"{secret(names)}^{secret(names)}"
    ds.PatientID, ds.OtherPatientIDs = secret(ids), secret(ids)
    ds.AccessionNumber, ds.InstitutionName = secret(ids), secret(names)
    ds.ReferringPhysicianName, ds.OperatorsName = secret(names), secret(names)
    for tag in (0x00080020, 0x00100030, 0x00080021):  # raw, so junk dates pass unvalidated
        value = draw(dates).encode()
        ds[tag] = RawDataElement(Tag(tag), "DA", len(value), value, 0, False, True)
    ds.SOPInstanceUID, ds.StudyInstanceUID = secret(uids), secret(uids)
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = secret(uids), secret(uids)
    ds.SOPClassUID, ds.Modality = CTImageStorage, "CT"
    depth = draw(st.integers(0, 3))
    parent = ds
    for _ in range(depth):  # nested references carrying UIDs and names
        child = Dataset()
        child.ReferencedSOPInstanceUID = secret(uids)
        child.PersonName = secret(names)
        parent.ReferencedSeriesSequence = Sequence([child])
        parent = child
    if draw(st.booleans()):
        ds.private_block(0x0011, "ZQX CREATOR", create=True).add_new(0x01, "LO", secret(names))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds, secrets


def _walk(ds: Dataset) -> list[tuple[int, DataElement]]:
    found: list[tuple[int, DataElement]] = []
    for elem in ds:
        found.append((int(elem.tag), elem))
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(_walk(item))
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_no_leak_and_actions_respected(case: tuple[Dataset, set[str]]) -> None:
    src, secrets = case
    result = apply(src, PROFILE, KEYS)
    assert result.dataset is not None
    out = result.dataset
    data = to_bytes(out)
    assert not [s for s in secrets if s.encode() in data]
    for tag, elem in _walk(out):
        action = PLAN.exact.get(tag)
        assert action != "X", hex(tag)
        if action == "Z" and tag not in (0x00100010, 0x00100020):
            assert elem.value in ("", None) or (elem.VR == "SQ" and not elem.value)
        if action == "D" and elem.VR not in ("SQ", "UI"):
            assert elem.value == DUMMIES[elem.VR]
    assert out.SOPInstanceUID == remap_uid(SECRET_A, src.SOPInstanceUID)
    assert verify_dataset(out, PROFILE) == []
