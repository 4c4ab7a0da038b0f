"""What the metrics read from a generated flow document (../shared/evals/indomain/README.md, "Reading a generated
flow"): its triggers, its nodes flattened (``nodes``, every ``do:`` list, ``on_failure``), and its edges, from
``needs`` and foreach bodies, transitively reduced and named by node type. A document that does not parse as a
YAML mapping is an empty flow."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

CODE_TYPES = {"code.js": "code", "code.python": "code"}  # a request rarely fixes the language


@dataclass(frozen=True)
class Shape:
    triggers: list[dict[str, Any]] = field(default_factory=list)
    node_types: list[str] = field(default_factory=list)  # code.* folded into "code"
    edges: list[tuple[str, str]] = field(default_factory=list)  # (source type, target type), reduced
    text: str = ""


def read(document: str | None) -> Shape:
    if not document:
        return Shape()
    try:
        data = yaml.safe_load(document)
    except yaml.YAMLError:
        return Shape()
    if not isinstance(data, dict):
        return Shape()
    triggers = [t for t in data.get("triggers") or [] if isinstance(t, dict)]
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    _walk(data.get("nodes") or [], nodes, edges, foreach=None)
    for node in data.get("on_failure") or []:
        if isinstance(node, dict) and isinstance(node.get("id"), str):
            nodes.setdefault(node["id"], str(node.get("type")))
    known = {(a, b) for a, b in edges if a in nodes and b in nodes}  # `needs` naming no node add nothing
    typed = [(_type(nodes[a]), _type(nodes[b])) for a, b in sorted(transitive_reduction(known))]
    return Shape(triggers, [_type(t) for t in nodes.values()], typed, document)


def _walk(items: Iterable[Any], nodes: dict[str, str], edges: set[tuple[str, str]], foreach: str | None) -> None:
    listed = [n for n in items if isinstance(n, dict) and isinstance(n.get("id"), str)]
    ids = {n["id"] for n in listed}
    for node in listed:
        nodes.setdefault(node["id"], str(node.get("type")))
    for node in listed:
        needs = node.get("needs") or []
        needs = [needs] if isinstance(needs, str) else [n for n in needs if isinstance(n, str)]
        for need in needs:
            edges.add((need, node["id"]))
        if foreach is not None and not any(n in ids for n in needs):
            edges.add((foreach, node["id"]))
        if isinstance(node.get("do"), list):
            _walk(node["do"], nodes, edges, foreach=node["id"])


def transitive_reduction(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Drop an edge when its target stays reachable from its source without it; a cyclic graph is kept as is."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    if _cyclic(succ):
        return set(edges)
    kept = set()
    for a, b in edges:
        if not _reachable(succ, a, b, skip=(a, b)):
            kept.add((a, b))
    return kept


def _reachable(succ: dict[str, set[str]], start: str, goal: str, skip: tuple[str, str]) -> bool:
    seen, stack = set(), [start]
    while stack:
        here = stack.pop()
        for nxt in succ.get(here, ()):
            if (here, nxt) == skip or nxt in seen:
                continue
            if nxt == goal:
                return True
            seen.add(nxt)
            stack.append(nxt)
    return False


def _cyclic(succ: dict[str, set[str]]) -> bool:
    state: dict[str, int] = {}

    def visit(node: str) -> bool:
        state[node] = 1
        for nxt in succ.get(node, ()):
            if state.get(nxt) == 1 or (state.get(nxt) is None and visit(nxt)):
                return True
        state[node] = 2
        return False

    return any(state.get(n) is None and visit(n) for n in list(succ))


def _type(node_type: str) -> str:
    return CODE_TYPES.get(node_type, node_type)
