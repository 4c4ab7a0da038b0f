"""an index on run_events.at: an owner's live event feed reads every run's events after a time

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_run_events_at", "run_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_run_events_at", "run_events")
