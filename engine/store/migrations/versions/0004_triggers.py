"""triggers armed per active flow version, and the trigger inbox (accepted events, each started exactly once)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch:  # batch: SQLite cannot ALTER every column kind in place
        batch.add_column(sa.Column("active_version", sa.String(length=80), nullable=True))
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("version_id", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint("uq_triggers_token", ["token"])
        batch.create_index("ix_triggers_next_fire_at", ["next_fire_at"])
    op.create_table(
        "trigger_inbox",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("flow_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("trigger", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("input", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=26), nullable=True),
        sa.Column("error", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["flow_id"], ["flows.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("flow_id", "dedupe_key", name="uq_trigger_inbox_dedupe"),
    )
    op.create_index("ix_trigger_inbox_status", "trigger_inbox", ["status"])


def downgrade() -> None:
    op.drop_index("ix_trigger_inbox_status", table_name="trigger_inbox")
    op.drop_table("trigger_inbox")
    with op.batch_alter_table("triggers") as batch:
        batch.drop_index("ix_triggers_next_fire_at")
        batch.drop_constraint("uq_triggers_token", type_="unique")
        batch.drop_column("last_fire_at")
        batch.drop_column("token")
        batch.drop_column("position")
        batch.drop_column("version_id")
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("active_version")
