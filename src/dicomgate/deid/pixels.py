"""Burned-in text: detect the risk, match a device's pixel mask, blank its rectangles."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset

from dicomgate.deid.profile import DEFAULT_BURNED_IN_MODALITIES, PixelMask
from dicomgate.deid.report import Change, describe

SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
PIXEL_DATA = 0x7FE00010
BURNED_IN_ANNOTATION = 0x00280301


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def burned_in_risk(
    dataset: Dataset, modalities: Iterable[str] = DEFAULT_BURNED_IN_MODALITIES
) -> str | None:
    """Return why ``dataset`` may carry burned-in text, or ``None``.

    Parameters
    ----------
    dataset
        The instance to inspect (header only; pixel data is not decoded).
    modalities
        Modalities treated as risky (default US, SC, OT, XC, ES, DOC).

    Returns
    -------
    str or None
        A short reason without PHI, e.g. ``"Modality US"``.
    """
    if PIXEL_DATA not in dataset and _text(dataset, "Modality") != "DOC":
        return None
    if _text(dataset, "BurnedInAnnotation").upper() == "YES":
        return "BurnedInAnnotation YES"
    modality = _text(dataset, "Modality").upper()
    if modality in {m.upper() for m in modalities}:
        return f"Modality {modality}"
    if _text(dataset, "SOPClassUID").startswith(SECONDARY_CAPTURE_ROOT):
        return "Secondary Capture SOP class"
    return None


def find_mask(masks: Iterable[PixelMask], dataset: Dataset) -> PixelMask | None:
    """Return the first mask matching the device (manufacturer, model) and matrix size."""
    manufacturer = _text(dataset, "Manufacturer")
    model = _text(dataset, "ManufacturerModelName")
    rows, columns = dataset.get("Rows"), dataset.get("Columns")
    for mask in masks:
        if (mask.manufacturer, mask.model, mask.rows, mask.columns) == (
            manufacturer,
            model,
            rows,
            columns,
        ):
            return mask
    return None


def apply_mask(ds: Dataset, mask: PixelMask) -> list[Change]:
    """Zero the mask's rectangles in every frame and re-encode as explicit VR little endian.

    Parameters
    ----------
    ds
        The (already de-identified, caller-owned) dataset; modified in place.
    mask
        The matching mask.

    Returns
    -------
    list of Change
        What was done, for the change report.
    """
    arr = ds.pixel_array.copy()
    colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    for rect in mask.rectangles:
        rows, cols = slice(rect.y, rect.y + rect.height), slice(rect.x, rect.x + rect.width)
        if colour:
            arr[..., rows, cols, :] = 0
        else:
            arr[..., rows, cols] = 0
    photometric = str(ds.PhotometricInterpretation)
    if photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom decodes YBR to RGB; the new encoding must say so
    ds.set_pixel_data(arr, photometric, int(ds.BitsStored), generate_instance_uid=False)
    ds.BurnedInAnnotation = "NO"
    note = f"{len(mask.rectangles)} rectangle(s) blanked; re-encoded explicit VR little endian"
    return [describe("", PIXEL_DATA, "M", note), describe("", BURNED_IN_ANNOTATION, "A", "NO")]
