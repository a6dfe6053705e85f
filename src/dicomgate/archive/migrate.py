"""Bring the index schema to the newest Alembic revision (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from dicomgate.db import Database

_SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


class MigrationError(Exception):
    """A migration left the index inconsistent; nothing of it was committed."""


def alembic_config() -> Config:
    """Return an Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every pending migration up to ``revision`` in one transaction.

    Parameters
    ----------
    db
        The index to migrate.
    revision
        The Alembic revision to stop at (tests start from an older schema).
    """
    config = alembic_config()
    with db.engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        # SQLite cannot drop a table other rows reference while foreign keys are on, which a
        # rebuild of such a table does; the pragma is a no-op inside a transaction.
        if sqlite:
            _sqlite_foreign_keys(connection, "OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, "ON")


def _sqlite_foreign_keys(connection: Connection, state: str) -> None:
    # On the driver connection: a SQLAlchemy execute would begin a transaction first.
    connection.connection.driver_connection.execute(f"PRAGMA foreign_keys={state}")  # type: ignore[union-attr]


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise MigrationError(f"migration broke foreign keys of {', '.join(tables)}")
