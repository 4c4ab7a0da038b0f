"""Persistence: SQLModel tables, migrations, connections (SQLite embedded, PostgreSQL at scale)."""
