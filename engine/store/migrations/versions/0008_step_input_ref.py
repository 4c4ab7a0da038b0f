"""run_steps.input_ref: a step's whole input (secrets blanked) in the blob store when it outgrows its preview

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:  # batch: SQLite cannot ALTER every column kind in place
        batch.add_column(sa.Column("input_ref", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("input_ref")
