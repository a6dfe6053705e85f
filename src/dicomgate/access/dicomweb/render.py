"""Rendered and thumbnail images (PS3.18 8.3.5): modality LUT, window, viewport, JPEG or PNG.

Pillow encodes the images; pydicom (with pylibjpeg) decodes the stored pixel data.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut

from dicomgate.errors import InvalidInputError

JPEG, PNG = "image/jpeg", "image/png"
_MAX_VIEWPORT = 4096


@dataclass(frozen=True, slots=True)
class RenderParams:
    """Window (center, width), viewport (width, height) and JPEG quality of a rendering."""

    window: tuple[float, float] | None = None
    viewport: tuple[int, int] | None = None
    quality: int = 90


def _numbers(text: str, name: str, count: int) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts[:count]]
    except ValueError:
        raise InvalidInputError(f"{name} must be comma-separated numbers") from None
    if len(values) < count or not all(np.isfinite(values)):
        raise InvalidInputError(f"{name} needs {count} numbers")
    return values


def parse_params(window: str | None, viewport: str | None, quality: str | None) -> RenderParams:
    """Parse the ``window``, ``viewport`` and ``quality`` query parameters.

    Raises
    ------
    InvalidInputError
        When a value is malformed or out of range.
    """
    win = None
    if window is not None:
        center, width = _numbers(window, "window", 2)
        if width <= 0:
            raise InvalidInputError("window width must be positive")
        win = (center, width)
    port = None
    if viewport is not None:
        w, h = (int(v) for v in _numbers(viewport, "viewport", 2))
        if not (0 < w <= _MAX_VIEWPORT and 0 < h <= _MAX_VIEWPORT):
            raise InvalidInputError(f"viewport sizes must be from 1 to {_MAX_VIEWPORT}")
        port = (w, h)
    q = 90
    if quality is not None:
        if not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise InvalidInputError("quality must be an integer from 1 to 100")
        q = int(quality)
    return RenderParams(win, port, q)


def _first(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0] if isinstance(value, list | tuple) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return None


def _window(ds: Dataset, pixels: np.ndarray, params: RenderParams) -> np.ndarray:
    header = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if params.window is not None:
        center, width = params.window
    elif header[0] is not None and header[1] is not None and header[1] > 0:
        center, width = header[0], header[1]
    else:
        low, high = float(pixels.min()), float(pixels.max())
        center, width = (low + high) / 2, max(high - low, 1.0)
    low = center - 0.5 - (width - 1) / 2
    scaled = (pixels.astype(np.float64) - low) / max(width - 1, 1.0) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _image(ds: Dataset, frame: int, params: RenderParams) -> Image.Image:
    array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        array = array[frame]
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if array.dtype != np.uint8:
            array = (array >> (int(ds.BitsStored) - 8)).astype(np.uint8)
        return Image.fromarray(array, "RGB")
    gray = _window(ds, apply_modality_lut(array, ds), params)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        gray = 255 - gray
    return Image.fromarray(gray, "L")


def render(ds: Dataset, frame: int, params: RenderParams, media_type: str) -> bytes:
    """Return frame ``frame`` (0-based) of ``ds`` encoded as ``media_type``."""
    image = _image(ds, frame, params)
    if params.viewport is not None:
        width, height = params.viewport
        scale = min(width / image.width, height / image.height)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    out = BytesIO()
    if media_type == PNG:
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=params.quality)
    return out.getvalue()
