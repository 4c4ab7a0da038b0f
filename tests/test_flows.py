"""The blueprints in flows/: all valid without warnings, and together they use every construct and type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.dsl.model import AnyNode, ApprovalNode, Flow, ForeachNode, StepNode
from engine.dsl.validator import check_flow
from engine.nodetypes.builtin import builtin_registry
from tests.conftest import FLOWS

FILES = sorted(FLOWS.glob("*.yaml"))


def load(path: Path) -> Flow:
    report = check_flow(path.read_bytes(), str(path))
    assert report.flow is not None and not report.issues, "\n".join(map(str, report.issues))
    return report.flow


def walk(nodes: tuple[AnyNode, ...]) -> Iterator[AnyNode]:
    for n in nodes:
        yield n
        if isinstance(n, ForeachNode):
            yield from walk(n.do)


def test_there_are_at_least_twelve_blueprints_and_the_demo() -> None:
    assert len(FILES) >= 12
    assert (FLOWS / "demo-orders-digest.yaml") in FILES


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_blueprint_is_valid_without_warnings_and_named_after_its_id(path: Path) -> None:
    flow = load(path)
    assert path.stem == flow.id
    assert flow.name and flow.description


def test_blueprints_together_use_every_node_type() -> None:
    used = {n.type for p in FILES for f in [load(p)] for n in (*walk(f.nodes), *walk(f.on_failure))}
    assert set(builtin_registry().names()) <= used, set(builtin_registry().names()) - used


def test_blueprints_together_use_every_construct() -> None:
    seen: set[str] = set()
    for path in FILES:
        flow = load(path)
        seen |= {f"trigger.{t.type}" for t in flow.triggers}
        for key in ("inputs", "secrets", "budget", "outputs", "on_failure", "tags"):
            if getattr(flow, key):
                seen.add(key)
        for n in (*walk(flow.nodes), *walk(flow.on_failure)):
            for key in ("needs", "retry", "timeout", "permissions", "name", "description"):
                if getattr(n, key):
                    seen.add(key)
            if n.if_ is not None:
                seen.add("if")
            seen.add(f"on_error.{n.on_error if n.on_error in ('fail', 'continue') else 'node'}")
            if isinstance(n, ForeachNode):
                seen.add("foreach")
                if n.concurrency > 1:
                    seen.add("foreach.concurrency")
                if any(isinstance(c, ForeachNode) for c in n.do):
                    seen.add("foreach.nested")
            if isinstance(n, ApprovalNode) and n.timeout is not None:
                seen.add("approval.timeout")
            if isinstance(n, StepNode) and n.retry is not None:
                seen.add(f"retry.{n.retry.backoff}")
    expected = {
        "trigger.manual", "trigger.webhook", "trigger.cron", "trigger.event", "trigger.flow",
        "inputs", "secrets", "budget", "outputs", "on_failure", "tags",
        "needs", "if", "retry", "retry.constant", "retry.exponential", "timeout", "permissions",
        "on_error.fail", "on_error.continue", "on_error.node",
        "foreach", "foreach.concurrency", "foreach.nested", "approval.timeout",
    }  # fmt: skip
    assert expected <= seen, expected - seen
