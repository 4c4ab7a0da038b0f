"""Edit operations on a flow draft, and the proposal a person accepts or rejects.

A follow-up message ("add a Slack alert if it fails", "run it at 7 instead") becomes a short list of structured
operations, never a rewritten document: an operation says exactly what it touches, so the review screen can show
it, the validator can locate what it broke, and a model (through instructor) can be asked for the same shapes.
Applying operations never changes the draft: it returns a :class:`Proposal` (old and new YAML, a line diff, a
structural diff, the validator's verdict), and only acceptance makes the new YAML the draft.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from engine.dsl.diff import FlowDiff, diff
from engine.dsl.issue import FlowValidationError
from engine.dsl.model import Flow
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry


class EditError(IonfluxError):
    """An operation cannot apply to the draft (a node that does not exist, an id already taken)."""

    code = "copilot.edit_invalid"


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AddNode(Operation):
    """Add a node. Without ``needs`` in the node it runs after ``after`` (default: the last top-level node)."""

    op: Literal["add_node"] = "add_node"
    node: dict[str, Any] = Field(description="the node as FluxGraph YAML would hold it: id, type, with, needs, ...")
    section: Literal["nodes", "on_failure"] = "nodes"
    after: str | None = Field(None, description="the node it follows (and needs); none: the last node")
    inside: str | None = Field(None, description="a foreach node's id: add the node to its `do` steps")
    before: str | None = Field(None, description="place it before this node (which then needs it)")


class RemoveNode(Operation):
    """Remove a node; the nodes that needed it need what it needed instead (the chain stays connected)."""

    op: Literal["remove_node"] = "remove_node"
    id: str


class UpdateNode(Operation):
    """Set or unset fields of a node by dotted path (``with.channel``, ``retry``, ``timeout``)."""

    op: Literal["update_node"] = "update_node"
    id: str
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)


class Connect(Operation):
    op: Literal["connect"] = "connect"
    source: str
    target: str = Field(description="the node that will need `source`")


class Disconnect(Operation):
    op: Literal["disconnect"] = "disconnect"
    source: str
    target: str


class SetTrigger(Operation):
    """Replace the flow's triggers (``replace``) or add to them."""

    op: Literal["set_trigger"] = "set_trigger"
    triggers: list[dict[str, Any]]
    replace: bool = True


class SetBudget(Operation):
    op: Literal["set_budget"] = "set_budget"
    max_cion_per_run: float | None = None
    max_cion_per_month: float | None = None


class SetFlowField(Operation):
    """Flow-level text: the name or the description."""

    op: Literal["set_flow_field"] = "set_flow_field"
    field: Literal["name", "description"]
    value: str


EditOp = Annotated[
    AddNode | RemoveNode | UpdateNode | Connect | Disconnect | SetTrigger | SetBudget | SetFlowField,
    Field(discriminator="op"),
]


class EditPlan(BaseModel):
    """What a model answers (through instructor) for a follow-up message: the operations and a one-line reply."""

    reply: str = Field(description="one or two sentences to the user saying what the change does")
    operations: list[EditOp]


def describe(op: Operation) -> str:
    """One line per operation, as the review screen lists them."""
    match op:
        case AddNode(node=node, section=section, inside=inside, before=before):
            where = f" inside {inside}" if inside else " to on_failure" if section == "on_failure" else ""
            where += f" before {before}" if before else ""
            return f"add node {node.get('id')} ({node.get('type')}){where}"
        case RemoveNode(id=node_id):
            return f"remove node {node_id}"
        case UpdateNode(id=node_id, set=values, unset=unset):
            parts = [f"{k} = {_short(v)}" for k, v in values.items()] + [f"unset {k}" for k in unset]
            return f"update {node_id}: " + ", ".join(parts)
        case Connect(source=s, target=t):
            return f"connect {s} -> {t}"
        case Disconnect(source=s, target=t):
            return f"disconnect {s} -> {t}"
        case SetTrigger(triggers=triggers, replace=replace):
            listed = ", ".join(_trigger_words(t) for t in triggers) or "no trigger"
            return f"{'set triggers to' if replace else 'add trigger'} {listed}"
        case SetBudget(max_cion_per_run=run, max_cion_per_month=month):
            caps = [f"{run:g} C-ION per run" if run else "", f"{month:g} C-ION per month" if month else ""]
            return "set budget " + (", ".join(c for c in caps if c) or "to none")
        case SetFlowField(field=name, value=value):
            return f"set flow {name} = {_short(value)}"
    return repr(op)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _trigger_words(t: dict[str, Any]) -> str:
    if t.get("type") == "cron":
        return f"cron {t.get('cron')} ({t.get('timezone', 'UTC')})"
    if t.get("type") == "event":
        return f"event {t.get('subject')}"
    return str(t.get("type"))


# --- applying ---------------------------------------------------------------------------------------------------


def apply(document: dict[str, Any], ops: Sequence[Operation]) -> dict[str, Any]:
    """The document with ``ops`` applied, in order (the input is not modified). Raises :class:`EditError`."""
    doc = copy.deepcopy(document)
    for index, op in enumerate(ops, 1):
        try:
            _apply_one(doc, op)
        except EditError as e:
            raise EditError(f"operation {index} ({describe(op)}): {e.message}", hint=e.hint) from None
    return doc


def _apply_one(doc: dict[str, Any], op: Operation) -> None:
    match op:
        case AddNode():
            _add(doc, op)
        case RemoveNode(id=node_id):
            _remove(doc, node_id)
        case UpdateNode(id=node_id, set=values, unset=unset):
            node = _find(doc, node_id)
            for path, value in values.items():
                _set_path(node, path, value)
            for path in unset:
                _unset_path(node, path)
        case Connect(source=s, target=t):
            _find(doc, s)
            needs = _find(doc, t).setdefault("needs", [])
            if s not in needs:
                needs.append(s)
        case Disconnect(source=s, target=t):
            target = _find(doc, t)
            if s not in (target.get("needs") or []):
                raise EditError(f"node {t!r} does not need {s!r}", hint=f"its needs: {target.get('needs') or []}")
            target["needs"] = [n for n in target["needs"] if n != s] or None
            if target["needs"] is None:
                del target["needs"]
        case SetTrigger(triggers=triggers, replace=replace):
            doc["triggers"] = [*([] if replace else doc.get("triggers") or []), *copy.deepcopy(triggers)]
        case SetBudget(max_cion_per_run=run, max_cion_per_month=month):
            budget = {k: v for k, v in (("max_cion_per_run", run), ("max_cion_per_month", month)) if v is not None}
            if budget:
                doc["budget"] = budget
            else:
                doc.pop("budget", None)
        case SetFlowField(field=name, value=value):
            doc[name] = value


def _lists(doc: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Every list of nodes in the document: the top level, on_failure, and each foreach's ``do``."""
    stack = [doc.get("nodes") or [], doc.get("on_failure") or []]
    while stack:
        nodes = stack.pop()
        yield nodes
        stack.extend(n["do"] for n in nodes if isinstance(n, dict) and isinstance(n.get("do"), list))


def node_ids(doc: dict[str, Any]) -> list[str]:
    return [n["id"] for nodes in _lists(doc) for n in nodes if isinstance(n, dict) and "id" in n]


def _find(doc: dict[str, Any], node_id: str) -> dict[str, Any]:
    for nodes in _lists(doc):
        for node in nodes:
            if isinstance(node, dict) and node.get("id") == node_id:
                return node
    raise EditError(f"there is no node {node_id!r}", hint="the draft's nodes: " + ", ".join(node_ids(doc)))


def _add(doc: dict[str, Any], op: AddNode) -> None:
    node = copy.deepcopy(op.node)
    if not node.get("id") or not node.get("type"):
        raise EditError("a new node needs an `id` and a `type`", hint="e.g. {id: alert, type: slack.post, with: …}")
    if node["id"] in node_ids(doc):
        raise EditError(f"a node {node['id']!r} exists already", hint="choose another id for the new node")
    if op.inside is not None:
        parent = _find(doc, op.inside)
        if not isinstance(parent.get("do"), list):
            raise EditError(f"node {op.inside!r} is not a foreach", hint="`inside` names a foreach node")
        target = parent["do"]
    else:
        target = doc.setdefault(op.section, [])
    if op.section == "on_failure" and op.inside is None:
        target.append(node)  # on_failure nodes run in order, with no needs
        return
    if op.before is not None:  # a gate in front of a node: it takes over the node's needs, the node needs it
        gated = _find(doc, op.before)
        node.setdefault("needs", list(gated.get("needs") or []))
        if not node["needs"]:
            del node["needs"]
        gated["needs"] = [node["id"]]
        position = next((i for i, n in enumerate(target) if n.get("id") == op.before), len(target))
        target.insert(position, node)
        return
    after = op.after if op.after is not None else (target[-1]["id"] if target else None)
    if after is not None and "needs" not in node:
        _find(doc, after)
        node["needs"] = [after]
    position = next((i + 1 for i, n in enumerate(target) if n.get("id") == after), len(target))
    target.insert(position, node)


def _remove(doc: dict[str, Any], node_id: str) -> None:
    removed = _find(doc, node_id)
    inherited = list(removed.get("needs") or [])
    for nodes in _lists(doc):
        if removed in nodes:
            nodes.remove(removed)
            break
    for nodes in _lists(doc):
        for node in nodes:
            needs = node.get("needs") or []
            if node_id in needs:
                rewired = [n for n in needs if n != node_id] + [n for n in inherited if n not in needs]
                if rewired:
                    node["needs"] = rewired
                else:
                    del node["needs"]
    if not doc.get("on_failure"):
        doc.pop("on_failure", None)


def _set_path(node: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    here = node
    for part in parents:
        child = here.setdefault(part, {})
        if not isinstance(child, dict):
            raise EditError(f"{path!r}: {part!r} of node {node.get('id')!r} is not a mapping")
        here = child
    here[last] = copy.deepcopy(value)


def _unset_path(node: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    here: Any = node
    for part in parents:
        here = here.get(part) if isinstance(here, dict) else None
    if not isinstance(here, dict) or last not in here:
        raise EditError(f"node {node.get('id')!r} has no field {path!r}")
    del here[last]


# --- proposals --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proposal:
    """A change to a draft, not yet accepted: what it does, the YAML before and after, and whether it validates."""

    operations: tuple[Operation, ...]
    before: str  # "" when the proposal creates the first draft
    after: str
    valid: bool
    problems: str  # the validator's located errors (when not valid)
    structure: FlowDiff | None  # None when either side does not validate

    @property
    def summary(self) -> list[str]:
        return [describe(op) for op in self.operations]

    def text_diff(self, name: str = "flow.yaml") -> str:
        lines = difflib.unified_diff(
            self.before.splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            f"a/{name}",
            f"b/{name}",
        )
        return "".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "operations": [op.model_dump(mode="json", by_alias=True) for op in self.operations],
            "summary": self.summary,
            "before": self.before,
            "after": self.after,
            "diff": self.text_diff(),
            "structure": self.structure.to_dict() if self.structure else None,
            "valid": self.valid,
            "problems": self.problems,
        }


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)


def propose(before: str, ops: Sequence[Operation], registry: Registry) -> Proposal:
    """Apply ``ops`` to the YAML ``before`` and validate the result (raises :class:`EditError` if an op cannot
    apply at all; a result that applies but does not validate is returned with ``valid=False`` and the errors)."""
    document = yaml.safe_load(before) or {}
    after = dump(apply(document, ops))
    return check(before, after, tuple(ops), registry)


def check(before: str, after: str, ops: tuple[Operation, ...], registry: Registry) -> Proposal:
    try:
        new = load_flow(after, "<draft>", registry=registry)
    except FlowValidationError as e:
        return Proposal(ops, before, after, False, located(e), None)
    old = _flow_or_none(before, registry)
    return Proposal(ops, before, after, True, "", diff(old, new) if old is not None else None)


def located(error: FlowValidationError) -> str:
    """Every error of a validation, one per line, with where it is (line, node, field) and how to fix it: what a
    person reviewing a proposal reads, and what goes back to a model to repair its answer."""
    lines = []
    for issue in error.issues:
        if issue.severity != "error":
            continue
        where = [str(issue.location)]
        if issue.node_id:
            where.append(f"node {issue.node_id}")
        if issue.path:
            where.append(f"field {issue.dotted_path}")
        hint = f" (hint: {issue.hint})" if issue.hint else ""
        lines.append(f"- {', '.join(where)}: {issue.message}{hint}")
    return "\n".join(lines) or str(error)


def _flow_or_none(text: str, registry: Registry) -> Flow | None:
    if not text.strip():
        return None
    try:
        return load_flow(text, "<draft>", registry=registry)
    except FlowValidationError:
        return None
