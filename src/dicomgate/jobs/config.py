"""The ``jobs`` section of the settings: queue backend, workers, leases, retries, inbox."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class QueueBackend(enum.StrEnum):
    """Which Huey storage carries the job queue."""

    SQLITE = "sqlite"
    REDIS = "redis"
    POSTGRES = "postgres"


class JobsConfig(BaseModel):
    """Options of the job engine (``jobs:`` in the config file)."""

    model_config = ConfigDict(extra="forbid")

    queue: QueueBackend = QueueBackend.SQLITE
    queue_name: str = Field(default="dicomgate", pattern=r"^[A-Za-z0-9_.-]+$", max_length=64)
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str | None = None
    workers: int = Field(default=2, ge=0, le=64)
    lease_seconds: float = Field(default=60.0, ge=0.5)
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_delay: float = Field(default=10.0, ge=0)
    retry_max_delay: float = Field(default=600.0, ge=0)
    inbox_root: Path | None = None
