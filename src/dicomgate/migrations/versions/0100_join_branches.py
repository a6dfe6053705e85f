"""join the revisions the parallel branches added on top of 0001

Revision ID: 0100
Revises: the heads listed below
"""

from collections.abc import Sequence

revision: str = "0100"
down_revision: str | Sequence[str] | None = ("0004", "0005", "0007", "0009")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
