"""Real services for the tests: a fresh PostgreSQL database and Redis namespace per test, and the commands some
tests run (curl, jq).

A service or command that is missing skips its tests on a laptop, but fails them when ``CI`` is set: CI has every
one, so a skip there would hide a broken setup.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import sqlalchemy as sa

PG_ADMIN = os.environ.get("IONFLUX_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("IONFLUX_TEST_REDIS", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need(host: str, port: int, name: str) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not running at {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI needs it (see README: services)")
    pytest.skip(message)


def need_commands(*names: str) -> None:
    """Commands a test runs as a user would (curl, jq): a skip on a laptop without them, a failure in CI, which
    installs them (scripts/system-packages)."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not on PATH"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI needs them: bash scripts/system-packages installs them")
    pytest.skip(f"{message} (bash scripts/system-packages installs them)")


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new empty database, dropped afterwards (tests never see each other's data)."""
    need("127.0.0.1", 5432, "PostgreSQL")
    name = f"ionflux_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def redis_namespace() -> str:
    need("127.0.0.1", 6379, "Redis")
    return f"ionflux-test-{uuid.uuid4().hex[:12]}"


@contextmanager
def fresh_redis_namespace() -> Iterator[str]:
    """A new Redis key prefix, its keys deleted afterwards (tests never see each other's messages)."""
    namespace = redis_namespace()
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
