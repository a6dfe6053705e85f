"""dicomweb: QIDO indexes, prepared instance metadata, follower position

Revision ID: 0005
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# QIDO-RS matches on these besides the indexes the initial schema has.
_INDEXES = [
    ("studies", "ix_studies_patient_name", ["patient_name"]),
    ("studies", "ix_studies_study_id", ["study_id"]),
    ("series", "ix_series_study_pk_series_number", ["study_pk", "series_number"]),
    ("instances", "ix_instances_series_pk_instance_number", ["series_pk", "instance_number"]),
    ("instances", "ix_instances_sop_class_uid", ["sop_class_uid"]),
]


def upgrade() -> None:
    for table, name, columns in _INDEXES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(name, columns, unique=False)
    op.create_table(
        "dicomweb_instance_metadata",
        sa.Column("instance_pk", PK, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("json", sa.Text(), nullable=False),
        sa.Column("prepared_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_pk"],
            ["instances.pk"],
            name=op.f("fk_dicomweb_instance_metadata_instance_pk_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_pk", name=op.f("pk_dicomweb_instance_metadata")),
    )
    op.create_table(
        "dicomweb_follower",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_dicomweb_follower")),
    )


def downgrade() -> None:
    op.drop_table("dicomweb_follower")
    op.drop_table("dicomweb_instance_metadata")
    for table, name, _columns in reversed(_INDEXES):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(name)
