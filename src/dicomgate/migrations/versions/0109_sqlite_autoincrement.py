"""never reuse the pks intake remembers: SQLite AUTOINCREMENT on the hierarchy and staging

Without AUTOINCREMENT SQLite hands the pk of a deleted last row to the next insert, so a pk a
receiver process remembered by UID could name another patient, study, series or session.
Rebuilding a table copies its rows with their pks, which seeds ``sqlite_sequence`` with the
largest one. PostgreSQL sequences never hand a value out twice: nothing to do there.

Revision ID: 0109
Revises: 0100
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0109"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents before children; ``dicomgate.archive.migrate`` runs SQLite migrations with foreign
# keys off (a table referenced by rows cannot be dropped otherwise) and checks them before
# the commit.
TABLES = ("patients", "studies", "series", "staging_sessions")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TABLES:
        with op.batch_alter_table(
            name, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
