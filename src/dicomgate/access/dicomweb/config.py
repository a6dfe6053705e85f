"""The ``dicomweb`` block of the settings: one nested model, every option with its default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DicomwebSettings(BaseModel):
    """Options of the DICOMweb service mounted at ``/dicomweb`` (and of STOW-RS intake)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    qido_max_limit: int = Field(default=1000, ge=1, le=100_000)
    stow_max_bytes: int = Field(default=4 * 1024**3, ge=1024)
    stow_memory_bytes: int = Field(default=16 * 1024**2, ge=0)
    prepare_metadata: bool = True
    prepare_interval: float = Field(default=0.5, gt=0)
    prepare_batch: int = Field(default=200, ge=1, le=10_000)
    bulk_data_threshold: int = Field(default=1024, ge=64)
    thumbnail_size: int = Field(default=128, ge=16, le=1024)
