"""The dependency graph of one list of sibling nodes: edges, cycles, topological order and ancestors.

A FluxGraph node list (the top level, a ``foreach``'s ``do``, or ``on_failure``) is one *scope*. Its edges are
``needs`` (``a -> b`` when ``b`` needs ``a``) and error routes (``a -> h`` when ``a`` has ``on_error: h``: the
handler runs after ``a`` fails, so it may read ``nodes.a.error``). Everything here is iterative, so a
1,000-node chain costs no recursion depth, and linear in nodes + edges except ancestor sets, which are bitsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from engine.dsl.model import AnyNode

EdgeKind = Literal["needs", "on_error"]


@dataclass(frozen=True, slots=True, order=True)
class Edge:
    """``source`` must finish before ``target`` starts."""

    source: str
    target: str
    kind: EdgeKind = "needs"


def edges(nodes: Sequence[AnyNode]) -> list[Edge]:
    """Every edge among ``nodes`` whose ends both exist in this scope."""
    ids = {n.id for n in nodes}
    out: list[Edge] = []
    for n in nodes:
        out.extend(Edge(need, n.id) for need in dict.fromkeys(n.needs) if need in ids)
        if n.on_error not in ("fail", "continue") and n.on_error in ids:
            out.append(Edge(n.id, n.on_error, "on_error"))
    return out


def _adjacency(ids: Iterable[str], graph_edges: Iterable[Edge]) -> dict[str, list[str]]:
    adjacency: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph_edges:
        adjacency[e.source].append(e.target)
    return adjacency


def find_cycles(ids: Sequence[str], graph_edges: Iterable[Edge]) -> list[list[str]]:
    """Each cycle found by depth-first search, as ``[a, b, c, a]``; empty when the graph is acyclic."""
    adjacency = _adjacency(ids, graph_edges)
    state = dict.fromkeys(ids, 0)  # 0 new, 1 on the current path, 2 done
    cycles: list[list[str]] = []
    for start in ids:
        if state[start]:
            continue
        path: list[str] = [start]
        iterators = [iter(adjacency[start])]
        state[start] = 1
        while iterators:
            nxt = next(iterators[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state[nxt] == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                iterators.append(iter(adjacency[nxt]))
    return cycles


def topological_order(ids: Sequence[str], graph_edges: Iterable[Edge]) -> list[str]:
    """Kahn's order, ties broken by document order (so it is stable); assumes the graph is acyclic."""
    graph_edges = list(graph_edges)
    adjacency = _adjacency(ids, graph_edges)
    indegree = dict.fromkeys(ids, 0)
    for e in graph_edges:
        indegree[e.target] += 1
    position = {i: k for k, i in enumerate(ids)}
    ready = sorted((i for i in ids if indegree[i] == 0), key=position.__getitem__, reverse=True)
    order: list[str] = []
    while ready:
        current = ready.pop()
        order.append(current)
        released = []
        for nxt in adjacency[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                released.append(nxt)
        ready.extend(released)
        ready.sort(key=position.__getitem__, reverse=True)
    return order


@dataclass(frozen=True, slots=True)
class Ancestry:
    """Who must finish before whom, as one bitset per node (cheap for 1,000-node flows)."""

    ids: tuple[str, ...]
    masks: dict[str, int]
    position: dict[str, int]

    def is_ancestor(self, candidate: str, node: str) -> bool:
        if candidate not in self.position or node not in self.masks:
            return False
        return bool(self.masks[node] >> self.position[candidate] & 1)

    def of(self, node: str) -> list[str]:
        mask = self.masks.get(node, 0)
        return [i for k, i in enumerate(self.ids) if mask >> k & 1]


def ancestry(ids: Sequence[str], graph_edges: Iterable[Edge]) -> Ancestry:
    """Transitive predecessors of every node. Assumes the graph is acyclic (check with find_cycles first)."""
    graph_edges = list(graph_edges)
    bit = {i: 1 << k for k, i in enumerate(ids)}
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph_edges:
        parents[e.target].append(e.source)
    masks: dict[str, int] = {}
    for node in topological_order(ids, graph_edges):
        mask = 0
        for p in parents[node]:
            mask |= masks[p] | bit[p]
        masks[node] = mask
    return Ancestry(tuple(ids), masks, {i: k for k, i in enumerate(ids)})


def layers(ids: Sequence[str], graph_edges: Iterable[Edge]) -> list[list[str]]:
    """Nodes grouped by longest distance from a root: each layer can run in parallel after the previous."""
    graph_edges = list(graph_edges)
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for e in graph_edges:
        parents[e.target].append(e.source)
    depth: dict[str, int] = {}
    for node in topological_order(ids, graph_edges):
        depth[node] = max((depth[p] + 1 for p in parents[node]), default=0)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for node in ids:
        grouped[depth[node]].append(node)
    return grouped
