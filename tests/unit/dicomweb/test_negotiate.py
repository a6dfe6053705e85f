import pytest

from dicomgate.access.dicomweb.negotiate import (
    EXPLICIT_LE,
    choose_dicom,
    choose_frames,
    choose_single,
    parse_accept,
)
from dicomgate.errors import NotAcceptableError

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def test_parse_orders_by_quality_and_keeps_quoted_commas() -> None:
    ranges = parse_accept(
        'multipart/related; type="application/dicom"; q=0.5, '
        'multipart/related; type="application/dicom"; transfer-syntax=*'
    )
    assert [r.params.get("transfer-syntax") for r in ranges] == ["*", None]
    assert parse_accept(None)[0].type == "*/*"
    assert parse_accept("text/html;q=0") == []


def test_dicom_default_is_explicit_little_endian() -> None:
    accept = parse_accept('multipart/related; type="application/dicom"')
    assert choose_dicom(accept, {EXPLICIT_LE}).transfer_syntax == EXPLICIT_LE
    with pytest.raises(NotAcceptableError):
        choose_dicom(accept, {JPEG_BASELINE})  # stored JPEG that cannot be decoded


def test_dicom_star_and_any() -> None:
    assert choose_dicom(parse_accept("*/*"), set()).transfer_syntax == "*"
    star = parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*')
    assert choose_dicom(star, set()).transfer_syntax == "*"
    for refused in ("application/dicom+json", "image/jpeg", 'multipart/related; type="image/jpeg"'):
        with pytest.raises(NotAcceptableError):
            choose_dicom(parse_accept(refused), {EXPLICIT_LE})


def test_frames() -> None:
    octets = parse_accept('multipart/related; type="application/octet-stream"')
    assert choose_frames(octets, EXPLICIT_LE, True).decode is False
    assert choose_frames(octets, JPEG_BASELINE, True).decode is True
    with pytest.raises(NotAcceptableError):
        choose_frames(octets, JPEG_BASELINE, False)
    jpeg = parse_accept(f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_BASELINE}')
    choice = choose_frames(jpeg, JPEG_BASELINE, True)
    assert (choice.decode, choice.media_type) == (False, "image/jpeg")
    with pytest.raises(NotAcceptableError):
        choose_frames(parse_accept('multipart/related; type="image/jpeg"'), EXPLICIT_LE, True)
    rle = parse_accept('multipart/related; type="image/x-dicom-rle"')
    assert choose_frames(rle, "1.2.840.10008.1.2.5", True).media_type == "image/dicom-rle"


def test_single() -> None:
    json = "application/dicom+json"
    assert choose_single(parse_accept("application/*"), [json]) == json
    assert choose_single(parse_accept(None), [json]) == json
    with pytest.raises(NotAcceptableError):
        choose_single(parse_accept("application/dicom+xml"), [json])
