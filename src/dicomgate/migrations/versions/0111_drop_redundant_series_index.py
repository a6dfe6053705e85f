"""Drop ix_instances_series_pk: ix_instances_series_pk_instance_number serves its lookups

Every stored instance updated both b-trees; the composite index (series_pk first) answers
every query and foreign-key check on series_pk alone, so intake writes one index page less
per instance.

Revision ID: 0111
Revises: 0110
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0111"
down_revision: str | None = "0110"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_instances_series_pk", table_name="instances")


def downgrade() -> None:
    op.create_index("ix_instances_series_pk", "instances", ["series_pk"], unique=False)
