"""A structural diff between two flow versions: nodes added/removed/changed, edges added/removed, flow fields.

Made for review screens (a person accepting Jules's edit, or comparing two versions of a run's flow): it speaks
in nodes and edges, not text lines, and it ignores formatting, since it compares canonical forms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.dsl.canonical import canonical_data, version_id
from engine.dsl.graph import Edge, edges
from engine.dsl.model import AnyNode, Flow, ForeachNode

MAX_PATHS_PER_NODE = 20


@dataclass(frozen=True, slots=True)
class NodeChange:
    id: str
    type: str
    fields: tuple[str, ...]  # dotted paths inside the node that differ, e.g. with.url, retry.max_attempts


@dataclass(frozen=True, slots=True)
class FlowDiff:
    old_version: str
    new_version: str
    added_nodes: tuple[tuple[str, str], ...]  # (id, type)
    removed_nodes: tuple[tuple[str, str], ...]
    changed_nodes: tuple[NodeChange, ...]
    added_edges: tuple[Edge, ...]
    removed_edges: tuple[Edge, ...]
    changed_fields: tuple[str, ...]  # flow-level: name, triggers, secrets, budget, inputs, outputs, ...

    @property
    def empty(self) -> bool:
        return self.old_version == self.new_version

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "added_nodes": [{"id": i, "type": t} for i, t in self.added_nodes],
            "removed_nodes": [{"id": i, "type": t} for i, t in self.removed_nodes],
            "changed_nodes": [{"id": c.id, "type": c.type, "fields": list(c.fields)} for c in self.changed_nodes],
            "added_edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in self.added_edges],
            "removed_edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in self.removed_edges],
            "changed_fields": list(self.changed_fields),
        }

    def render(self) -> str:
        """A short text form: ``+`` added, ``-`` removed, ``~`` changed."""
        if self.empty:
            return f"no changes ({self.old_version})"
        lines = [f"{self.old_version} -> {self.new_version}"]
        lines += [f"~ flow {f}" for f in self.changed_fields]
        lines += [f"+ node {i} ({t})" for i, t in self.added_nodes]
        lines += [f"- node {i} ({t})" for i, t in self.removed_nodes]
        lines += [f"~ node {c.id} ({c.type}): {', '.join(c.fields)}" for c in self.changed_nodes]
        lines += [
            f"+ edge {e.source} -> {e.target}" + (" (on_error)" if e.kind == "on_error" else "")
            for e in self.added_edges
        ]
        lines += [
            f"- edge {e.source} -> {e.target}" + (" (on_error)" if e.kind == "on_error" else "")
            for e in self.removed_edges
        ]
        return "\n".join(lines)


def _all_nodes(nodes: tuple[AnyNode, ...]) -> Iterator[AnyNode]:
    for n in nodes:
        yield n
        if isinstance(n, ForeachNode):
            yield from _all_nodes(n.do)


def _all_edges(nodes: tuple[AnyNode, ...]) -> set[Edge]:
    out = set(edges(list(nodes)))
    for n in nodes:
        if isinstance(n, ForeachNode):
            out |= _all_edges(n.do)
    return out


def _node_data(flow: Flow) -> dict[str, dict[str, Any]]:
    data = canonical_data(flow)
    out: dict[str, dict[str, Any]] = {}

    def collect(nodes: list[dict[str, Any]], scope: str) -> None:
        for n in nodes:
            inner = n.get("do")
            # where a node sits is part of what it does: moved into a loop, it runs once per item
            out[n["id"]] = {**{k: v for k, v in n.items() if k != "do"}, "(list)": scope}
            if inner:
                collect(inner, f"do of {n['id']}")

    collect(data.get("nodes", []), "nodes")
    collect(data.get("on_failure", []), "on_failure")
    return out


def _orders(flow: Flow) -> dict[str, list[str]]:
    """The order of each node list (it decides which ready node starts first, and how the flow reads)."""
    out: dict[str, list[str]] = {"nodes": [n.id for n in flow.nodes], "on_failure": [n.id for n in flow.on_failure]}
    for n in _all_nodes(flow.nodes):
        if isinstance(n, ForeachNode):
            out[f"do of {n.id}"] = [c.id for c in n.do]
    return out


def _changed_paths(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            yield from _changed_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    elif a != b:
        yield prefix or "(value)"


def _reordered(old: dict[str, list[str]], new: dict[str, list[str]]) -> list[str]:
    out = []
    for name in new.keys() & old.keys():
        common = set(old[name]) & set(new[name])
        if [i for i in old[name] if i in common] != [i for i in new[name] if i in common]:
            out.append(f"order of {name}")
    return sorted(out)


def diff(old: Flow, new: Flow) -> FlowDiff:
    old_nodes = {n.id: n for n in (*_all_nodes(old.nodes), *_all_nodes(old.on_failure))}
    new_nodes = {n.id: n for n in (*_all_nodes(new.nodes), *_all_nodes(new.on_failure))}
    old_data, new_data = _node_data(old), _node_data(new)
    changed = []
    for node_id in new_nodes.keys() & old_nodes.keys():
        paths = list(_changed_paths(old_data[node_id], new_data[node_id]))
        if paths:
            fields = tuple(paths[:MAX_PATHS_PER_NODE]) + (("…",) if len(paths) > MAX_PATHS_PER_NODE else ())
            changed.append(NodeChange(node_id, new_nodes[node_id].type, fields))
    old_edges = _all_edges(old.nodes) | _all_edges(old.on_failure)
    new_edges = _all_edges(new.nodes) | _all_edges(new.on_failure)
    old_flow = {k: v for k, v in canonical_data(old).items() if k not in ("nodes", "on_failure")}
    new_flow = {k: v for k, v in canonical_data(new).items() if k not in ("nodes", "on_failure")}
    order = list(new_nodes)
    position = {node_id: k for k, node_id in enumerate(order)}
    return FlowDiff(
        old_version=version_id(old),
        new_version=version_id(new),
        added_nodes=tuple((i, new_nodes[i].type) for i in order if i not in old_nodes),
        removed_nodes=tuple((i, old_nodes[i].type) for i in old_nodes if i not in new_nodes),
        changed_nodes=tuple(sorted(changed, key=lambda c: position[c.id])),
        added_edges=tuple(sorted(new_edges - old_edges)),
        removed_edges=tuple(sorted(old_edges - new_edges)),
        changed_fields=(
            *(k for k in dict.fromkeys([*old_flow, *new_flow]) if old_flow.get(k) != new_flow.get(k)),
            *_reordered(_orders(old), _orders(new)),
        ),
    )
