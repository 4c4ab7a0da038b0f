"""flows.webhook_tokens: a deactivated flow's webhook URL tokens, by trigger position, so that activating it again
gives back the same URLs (a sender configured with one keeps working)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch:  # batch: SQLite cannot ALTER every column kind in place
        batch.add_column(sa.Column("webhook_tokens", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("webhook_tokens")
