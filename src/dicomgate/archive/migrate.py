"""Bring the index schema to the newest Alembic revision (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from dicomgate.db import Database

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(db: Database) -> None:
    """Apply every pending migration in one transaction."""
    config = alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
