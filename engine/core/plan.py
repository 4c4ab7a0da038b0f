"""A flow version compiled for execution: nodes by id, scopes, dependents, error routes, loop sinks.

The machine asks the same questions after every event ("who waits for X?", "is H X's error handler?", "what
are the roots of this loop body?"); a :class:`Plan` answers each in O(1). It is built once per flow version
from a *validated* flow and never changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from engine.dsl.canonical import version_id
from engine.dsl.model import AnyNode, Flow, ForeachNode
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

MAIN = "main"
ON_FAILURE = "on_failure"


@dataclass(frozen=True, slots=True)
class Scope:
    """One node list: the top-level nodes, a foreach's ``do`` (named ``do:<id>``), or ``on_failure``."""

    name: str
    node_ids: tuple[str, ...]
    roots: tuple[str, ...]  # nodes with nothing to wait for in this scope
    sinks: tuple[str, ...]  # nodes nothing in this scope waits for


@dataclass(frozen=True, slots=True)
class Plan:
    flow: Flow
    version_id: str
    nodes: Mapping[str, AnyNode]
    scope_of: Mapping[str, str]
    scopes: Mapping[str, Scope]
    # who waits for a node: explicit needs, plus the error handler named by its on_error
    dependents: Mapping[str, tuple[str, ...]]
    # the implicit prerequisite of an error handler: handler id -> the node whose errors it handles
    handles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    loop_of_scope: Mapping[str, str] = field(default_factory=dict)  # "do:loop" -> "loop"
    # a hash of each node's own definition: a re-run on a newer version reuses an output only if it is unchanged
    digests: Mapping[str, str] = field(default_factory=dict)
    registry: Registry = field(default_factory=builtin_registry)

    def prerequisites(self, node_id: str) -> tuple[str, ...]:
        """Everything a node waits for: its needs and, for a handler, the nodes it handles."""
        node = self.nodes[node_id]
        return tuple(dict.fromkeys((*node.needs, *self.handles.get(node_id, ()))))

    def error_handler(self, node_id: str) -> str | None:
        target = self.nodes[node_id].on_error
        return None if target in ("fail", "continue") else target


def node_digest(node: AnyNode) -> str:
    data = node.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data.pop("do", None)  # a loop body's nodes have their own digests
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def compile_plan(flow: Flow, registry: Registry | None = None) -> Plan:
    """Index a validated flow for the machine. (Validation guarantees ids are unique and the graph acyclic.)"""
    nodes: dict[str, AnyNode] = {}
    scope_of: dict[str, str] = {}
    scopes: dict[str, Scope] = {}
    dependents: dict[str, list[str]] = {}
    handles: dict[str, list[str]] = {}
    loop_of_scope: dict[str, str] = {}

    def add_scope(name: str, members: tuple[AnyNode, ...]) -> None:
        for n in members:
            nodes[n.id] = n
            scope_of[n.id] = name
            dependents.setdefault(n.id, [])
        for n in members:
            for need in dict.fromkeys(n.needs):
                dependents[need].append(n.id)
            if n.on_error not in ("fail", "continue"):
                dependents[n.id].append(n.on_error)
                handles.setdefault(n.on_error, []).append(n.id)
        waited_on = {d for n in members for d in n.needs} | {
            n.on_error for n in members if n.on_error not in ("fail", "continue")
        }
        roots = tuple(n.id for n in members if not n.needs and n.id not in handles)
        sinks = tuple(n.id for n in members if n.id not in waited_on)
        scopes[name] = Scope(name, tuple(n.id for n in members), roots, sinks)
        for n in members:
            if isinstance(n, ForeachNode):
                inner = f"do:{n.id}"
                loop_of_scope[inner] = n.id
                add_scope(inner, n.do)

    add_scope(MAIN, flow.nodes)
    add_scope(ON_FAILURE, flow.on_failure)
    return Plan(
        flow=flow,
        version_id=version_id(flow),
        nodes=MappingProxyType(nodes),
        scope_of=MappingProxyType(scope_of),
        scopes=MappingProxyType(scopes),
        dependents=MappingProxyType({k: tuple(v) for k, v in dependents.items()}),
        handles=MappingProxyType({k: tuple(v) for k, v in handles.items()}),
        loop_of_scope=MappingProxyType(loop_of_scope),
        digests=MappingProxyType({node_id: node_digest(node) for node_id, node in nodes.items()}),
        registry=registry or builtin_registry(),
    )
