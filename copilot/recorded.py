"""What a node saw in past runs, so Jules can try a change on real inputs before proposing it: a rewritten prompt
scored on the contexts its node was rendered with (copilot.prompt_tuning.compare_variants), and, later, a fix
replayed on a failed step's recorded input.

A context is rebuilt from the run's event log (the orchestrator's replayable state), exactly as the worker built
it for the step: ``inputs``, ``trigger``, ``run``, ``nodes`` (upstream outputs) and, in a loop, ``item``/``index``.
Secrets are never part of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from engine.core.context import expression_context
from engine.core.state import StepKey
from engine.runtime.orchestrator import Orchestrator
from engine.store.tables import run_steps, runs


@dataclass(frozen=True)
class Recorded:
    run_id: str
    key: str  # the step's key: ``node`` or ``loop[3].node``
    context: dict[str, Any]


def recorded_contexts(orchestrator: Orchestrator, flow_id: str, node_id: str, limit: int = 5) -> list[Recorded]:
    """The expression contexts ``node_id`` ran with in the latest runs of ``flow_id`` (newest first, at most
    ``limit``; one per run: its first execution of the node)."""
    query = (
        sa.select(runs.c.id, run_steps.c.key)
        .join(run_steps, run_steps.c.run_id == runs.c.id)
        .where(runs.c.flow_id == flow_id, run_steps.c.node_id == node_id, run_steps.c.started_at.is_not(None))
        .order_by(runs.c.id.desc(), run_steps.c.key)
    )
    found: list[Recorded] = []
    seen: set[str] = set()
    with orchestrator.db.connect() as conn:
        rows = conn.execute(query).all()
    for run_id, key_text in rows:
        if run_id in seen or len(found) >= limit:
            continue
        seen.add(run_id)
        context = _context(orchestrator, run_id, key_text)
        if context is not None:
            found.append(Recorded(run_id, key_text, context))
    return found


def _context(orchestrator: Orchestrator, run_id: str, key_text: str) -> dict[str, Any] | None:
    state = orchestrator.state(run_id)
    with orchestrator.db.connect() as conn:
        version = conn.execute(sa.select(runs.c.version_id).where(runs.c.id == run_id)).scalar()
    if version is None:
        return None
    plan = orchestrator.plan(str(version))
    key = StepKey.parse(key_text)
    with contextlib.suppress(KeyError):  # a node of an older version that this plan no longer has
        return dict(_plain(expression_context(plan, state, key)))
    return None


def _plain(value: Any) -> Any:
    """Views (the lazy ``nodes`` mapping) as plain data, so a context can be kept, shown and compared."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
