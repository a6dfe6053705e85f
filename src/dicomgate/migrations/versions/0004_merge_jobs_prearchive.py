"""Merge the jobs (0002) and prearchive (0003) heads; no schema change.

De-identification adds no index table (the identity vault is its own SQLite file). This
revision only joins the two branches both of which start from 0001, so that ``upgrade head``
has one head. If the integrator merges the heads otherwise, drop this file.

Revision ID: 0004
Revises: 0002, 0003
"""

from __future__ import annotations

revision: str = "0004"
down_revision: tuple[str, ...] = ("0002", "0003")
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
