"""Building runtimes for tests: embedded (SQLite + in-process broker) or scale-out (PostgreSQL + Redis)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.runtime.config import RuntimeConfig
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import new_key
from engine.store.db import sqlite_url
from tests.services import REDIS, fresh_postgres, fresh_redis_namespace

BACKENDS = ("embedded", "postgres+redis")
EXTENSIONS = ("tests.ext_testing",)


def config(tmp: Path, database_url: str, redis_url: str | None = None, **overrides: Any) -> RuntimeConfig:
    values: dict[str, Any] = {
        "database_url": database_url,
        "blob_dir": tmp / "blobs",
        "secret_key": new_key(),
        "redis_url": redis_url,
        "heartbeat_seconds": 0.2,
        "dead_after_seconds": 1.0,
        "requeue_after_seconds": 1.0,
        "tick_seconds": 0.05,
        "worker_threads": 4,
    }
    values.update(overrides)
    return RuntimeConfig(**values)


@contextmanager
def backend_config(kind: str, tmp: Path, **overrides: Any) -> Iterator[RuntimeConfig]:
    if kind == "embedded":
        yield config(tmp, sqlite_url(tmp / "ionflux.db"), **overrides)
        return
    with fresh_redis_namespace() as namespace, fresh_postgres() as url:
        yield config(tmp, url, REDIS, queue_namespace=namespace, **overrides)


@contextmanager
def running(kind: str, tmp: Path, *, start: bool = True, **overrides: Any) -> Iterator[Runtime]:
    with backend_config(kind, tmp, **overrides) as cfg, Runtime(cfg, extension_modules=EXTENSIONS) as runtime:
        if start:
            runtime.start()
        yield runtime


def flow(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def run_flow(runtime: Runtime, text: str, input: Any = None, timeout: float = 30.0) -> tuple[str, str]:
    """Save and start a flow, wait until it settles; -> (run id, status)."""
    _, version = runtime.orchestrator.save_flow(flow(text), "test.yaml")
    run_id = runtime.orchestrator.start_run(version, input)
    return run_id, str(runtime.wait(run_id, timeout))


def attempts(runtime: Runtime, run_id: str) -> list[Any]:
    """Every step attempt the run recorded (``run_steps`` rows), by step key then attempt."""
    import sqlalchemy as sa

    from engine.store.tables import run_steps

    with runtime.db.connect() as conn:
        return list(
            conn.execute(
                sa.select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.key, run_steps.c.attempt)
            ).all()
        )


# flows several test modules run (API and UI alike): one waiting at an approval, one whose second step fails
GATED = flow(
    """
    fluxgraph: 1
    id: gated
    nodes:
      - {id: prepare, type: data.set, with: {amount: 120}}
      - id: gate
        type: approval
        needs: [prepare]
        with: {message: "Pay 120?"}
      - {id: pay, type: data.set, needs: [gate], with: {paid: true}}
    """
)
FRAGILE = flow(
    """
    fluxgraph: 1
    id: fragile
    nodes:
      - {id: fetch, type: data.set, with: {rows: 3}}
      - {id: store, type: test.flaky, needs: [fetch], with: {succeed_on: 0}}
    """
)


def one_step_flow(flow_id: str, description: str = "A flow.") -> str:
    """The smallest valid flow with a given id and description (for listings, search and ownership tests)."""
    return flow(
        f"""
        fluxgraph: 1
        id: {flow_id}
        description: {description}
        nodes:
          - {{id: a, type: data.set, with: {{v: 1}}}}
        """
    )


# a flow that fails on a misspelt input (the run's input has `email`): what the heal tests diagnose and fix
TYPO = flow(
    """
    fluxgraph: 1
    id: welcome-text
    nodes:
      - id: text
        type: text.template
        with: {template: "Welcome {{ inputs.name }} <{{ inputs.emial }}>"}
    """
)
TYPO_INPUT = {"email": "ana@example.com", "name": "Ana"}  # what TYPO's run gets (it reads inputs.emial)
