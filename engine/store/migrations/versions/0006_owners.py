"""owners, API tokens, browser sessions and the audit log; flows, secrets and chat sessions belong to an owner

Everything that existed before belongs to the ``local`` owner (the command line's, in embedded mode).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    owners = op.create_table(
        "owners",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.bulk_insert(owners, [{"id": "local", "name": "local", "role": "admin", "created_at": datetime.now(UTC)}])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("owner_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("last_used_at", _WHEN, nullable=True),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("ix_api_tokens_owner_id", "api_tokens", ["owner_id"])
    op.create_table(
        "web_sessions",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=26), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_web_sessions_owner_id", "web_sessions", ["owner_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("owner_id", sa.String(length=26), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_owner_id", "audit_log", ["owner_id"])
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    with op.batch_alter_table("flows") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(length=26), nullable=False, server_default="local"))
        batch.add_column(sa.Column("deleted_at", _WHEN, nullable=True))
        batch.create_foreign_key("fk_flows_owner_id", "owners", ["owner_id"], ["id"])
        batch.create_index("ix_flows_owner_id", ["owner_id"])
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(length=26), nullable=False, server_default="local"))
        batch.create_foreign_key("fk_chat_sessions_owner_id", "owners", ["owner_id"], ["id"])
        batch.create_index("ix_chat_sessions_owner_id", ["owner_id"])
    # a secret's name is unique per owner: the key becomes (owner, name); rebuilt by hand, the same on both databases
    op.create_table(
        "secrets_by_owner",
        sa.Column("owner_id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["owners.id"]),
        sa.PrimaryKeyConstraint("owner_id", "name"),
    )
    op.execute(
        "INSERT INTO secrets_by_owner (owner_id, name, ciphertext, created_at, updated_at) "
        "SELECT 'local', name, ciphertext, created_at, updated_at FROM secrets"
    )
    op.drop_table("secrets")
    op.rename_table("secrets_by_owner", "secrets")


def downgrade() -> None:
    """Back to one owner: the local owner's secrets, flows and sessions stay; other owners' secrets are dropped."""
    op.create_table(
        "secrets_by_name",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        "INSERT INTO secrets_by_name (name, ciphertext, created_at, updated_at) "
        "SELECT name, ciphertext, created_at, updated_at FROM secrets WHERE owner_id = 'local'"
    )
    op.drop_table("secrets")
    op.rename_table("secrets_by_name", "secrets")
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_index("ix_chat_sessions_owner_id")
        batch.drop_constraint("fk_chat_sessions_owner_id", type_="foreignkey")
        batch.drop_column("owner_id")
    with op.batch_alter_table("flows") as batch:
        batch.drop_index("ix_flows_owner_id")
        batch.drop_constraint("fk_flows_owner_id", type_="foreignkey")
        batch.drop_column("deleted_at")
        batch.drop_column("owner_id")
    op.drop_index("ix_audit_log_at", "audit_log")
    op.drop_index("ix_audit_log_owner_id", "audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_web_sessions_owner_id", "web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_api_tokens_owner_id", "api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("owners")
