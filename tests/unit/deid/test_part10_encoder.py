"""The fast Part-10 encoder writes exactly what pydicom's dcmwrite writes."""

from __future__ import annotations

import io

import pytest
from deid_builders import ct_slice, roundtrip, rt_chain, to_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from dicomgate.deid import DeidKeys, Profile, apply
from dicomgate.dicom.encode import encode_part10

KEYS = DeidKeys(uid_secret=b"encoder-test-secret-0123456789", subject_id="SUBJ-0009")


def _pydicom_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _prepare(ds: Dataset) -> Dataset:
    # Both writers must see the same file meta (pydicom fills in its own implementation UID).
    ds.file_meta.ImplementationClassUID = "1.2.3.4"
    ds.file_meta.ImplementationVersionName = "TEST"
    return ds


@pytest.mark.parametrize("index", range(6))
def test_read_datasets_encode_byte_identical(index: int) -> None:
    ds = _prepare(roundtrip(rt_chain()[index]))
    assert encode_part10(ds) == _pydicom_bytes(ds)


@pytest.mark.parametrize("index", range(6))
def test_deidentified_datasets_encode_byte_identical(index: int, basic: Profile) -> None:
    result = apply(roundtrip(rt_chain()[index]), basic, KEYS)
    assert result.dataset is not None
    ds = _prepare(result.dataset)
    assert encode_part10(ds) == _pydicom_bytes(ds)


def test_built_dataset_with_decoded_values_encodes_identically() -> None:
    ds = _prepare(ct_slice(0))
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing = [0.5, 0.5]
    ds.StudyDescription = "Étude thorax"  # non-ASCII goes through pydicom's charset code
    ds.WindowCenter = 40
    ds.ReferencedFrameNumber = [1, 2]
    ds.add_new(0x00181310, "US", [0, 8, 8, 0])
    assert encode_part10(ds) == _pydicom_bytes(ds)


def test_undefined_length_sequences_keep_their_form() -> None:
    source = ct_slice(1)
    source.ReferencedImageSequence[0].is_undefined_length_sequence_item = True
    source["ReferencedImageSequence"].is_undefined_length = True
    ds = _prepare(roundtrip(source))
    data = encode_part10(ds)
    assert data == _pydicom_bytes(ds)
    assert b"\xfe\xff\xdd\xe0" in data  # sequence delimiter written


def test_implicit_vr_falls_back_to_pydicom() -> None:
    source = ct_slice(2)
    source.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = _prepare(dcmread(io.BytesIO(_pydicom_bytes(source))))
    assert ds.original_encoding == (True, True)
    assert encode_part10(ds) == _pydicom_bytes(ds)


def test_missing_meta_is_completed_from_the_dataset() -> None:
    ds = ct_slice(3)
    del ds.file_meta.MediaStorageSOPInstanceUID
    back = dcmread(io.BytesIO(encode_part10(ds)))
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.ImplementationClassUID.startswith("2.25.")
    assert back.PixelData == ds.PixelData


def test_missing_transfer_syntax_is_a_clear_error() -> None:
    ds = ct_slice(4)
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(ValueError, match="TransferSyntaxUID"):
        encode_part10(ds)


_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"))


@settings(max_examples=60, deadline=None)
@given(
    description=_TEXT.filter(lambda s: len(s) <= 64),
    numbers=st.lists(st.integers(0, 0xFFFF), max_size=4),
    nested=st.lists(_TEXT.filter(lambda s: len(s) <= 16), max_size=3),
)
def test_generated_values_encode_identically(
    description: str, numbers: list[int], nested: list[str]
) -> None:
    ds = _prepare(roundtrip(ct_slice(5)))
    ds.SeriesDescription = description
    ds.add_new(0x00181310, "US", numbers)
    ds.AnatomicRegionSequence = Sequence([Dataset() for _ in nested])
    for item, text in zip(ds.AnatomicRegionSequence, nested, strict=True):
        item.CodeMeaning = text
    data = encode_part10(ds)
    assert data == _pydicom_bytes(ds)
    # LO: trailing spaces are padding and dropped on reading; leading ones are kept.
    assert dcmread(io.BytesIO(data)).SeriesDescription == description.rstrip(" ")


def test_round_trip_reads_back_to_the_same_file() -> None:
    first = encode_part10(_prepare(roundtrip(rt_chain()[3])))
    assert encode_part10(dcmread(io.BytesIO(first))) == first
    assert to_bytes(dcmread(io.BytesIO(first))) == first
