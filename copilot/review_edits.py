"""Jules's review of a draft (error-handling advice, cheaper alternatives, descriptions, shorter prompts) as edit
operations, so that in a chat they are proposals like any other: shown as a diff, applied only when accepted,
recorded with who accepted them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from copilot.advice import Advice, advise
from copilot.describe import describe
from copilot.edits import AddNode, Operation, SetBudget, SetFlowField, UpdateNode
from copilot.prompt_tuning import tune_flow
from copilot.savings import suggest_savings
from engine.dsl.model import Flow
from engine.nodetypes.registry import Registry


@dataclass(frozen=True)
class Review:
    """Operations and one line per suggestion saying why (what the chat shows before the diff)."""

    operations: tuple[Operation, ...]
    reasons: tuple[str, ...]


def error_handling(flow: Flow, doc: dict[str, Any], registry: Registry, alert_to: str = "ops@example.com") -> Review:
    """``doc``: the flow as data (the advice's edits point into it by position)."""
    found = advise(flow, registry, alert_to=alert_to)
    return Review(_advice_ops(found, doc), tuple(a.why for a in found))


def cheaper(flow: Flow, registry: Registry) -> Review:
    """The cheaper alternatives that only change fields (one per node: the biggest saving)."""
    ops: list[Operation] = []
    reasons: list[str] = []
    seen: set[str] = set()
    for saving in suggest_savings(flow, registry, datetime.now(UTC)):
        if saving.new_nodes or saving.node_id in seen:
            continue  # a new filter needs its condition from the author: suggested in words only
        seen.add(saving.node_id)
        ops += [UpdateNode(id=c.node_id, set={c.field: c.value}) for c in saving.changes]
        reasons.append(saving.describe())
    return Review(tuple(ops), tuple(reasons))


def documented(flow: Flow, registry: Registry) -> Review:
    written = describe(flow, registry)
    ops: list[Operation] = [SetFlowField(field="description", value=written.flow)]
    ops += [UpdateNode(id=node_id, set={"description": text}) for node_id, text in written.nodes.items()]
    return Review(tuple(ops), (f"the flow: {written.flow}",))


def shorter_prompts(flow: Flow, registry: Registry) -> Review:
    ops: list[Operation] = []
    reasons: list[str] = []
    for tuning in tune_flow(flow, registry):
        for rewrite in tuning.rewrites:
            ops.append(UpdateNode(id=tuning.node_id, set={f"with.{rewrite.field}": rewrite.rewritten}))
        reasons.append(
            f"{tuning.node_id}: {tuning.saved_tokens} fewer prompt tokens, {tuning.cion_per_run:g} C-ION less a run"
        )
    return Review(tuple(ops), tuple(reasons))


def _advice_ops(found: list[Advice], doc: dict[str, Any]) -> tuple[Operation, ...]:
    ops: list[Operation] = []
    for edit in (e for a in found for e in a.edits):
        path = tuple(edit.path)
        if edit.insert is not None:
            holder = _at(doc, path)
            siblings = holder.get(edit.key) or [] if isinstance(holder, dict) else []
            section = "on_failure" if edit.key == "on_failure" else "nodes"
            inside = holder.get("id") if path and edit.key == "do" else None
            before = siblings[edit.insert]["id"] if edit.insert < len(siblings) and section == "nodes" else None
            ops.append(AddNode(node=dict(edit.value), section=section, inside=inside, before=before))
        elif path == () and edit.key == "on_failure":
            ops += [AddNode(node=dict(node), section="on_failure") for node in edit.value]
        elif path == () and edit.key == "budget":
            ops.append(SetBudget(**edit.value))
        elif path == ("budget",):
            budget = {**(doc.get("budget") or {}), edit.key: edit.value}
            ops.append(SetBudget(**budget))
        else:
            node_path, inner = _split(doc, path)
            node = _at(doc, node_path)
            ops.append(UpdateNode(id=node["id"], set={".".join([*inner, edit.key]): edit.value}))
    return tuple(ops)


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _split(doc: dict[str, Any], path: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[str]]:
    """The path of the innermost node a path points into, and the field path inside that node."""
    for cut in range(len(path), 0, -1):
        here = _at(doc, path[:cut])
        if isinstance(here, dict) and "id" in here and "type" in here:
            return path[:cut], [str(p) for p in path[cut:]]
    raise ValueError(f"advice edit at {path} is not inside a node")
