"""The state every whole-flow check shares: the flow, where each node sits, and the issues found so far.

``engine.dsl.semantics.Checker`` is assembled from this base and the check families
(``engine.dsl.references``, ``engine.dsl.flowchecks``), so each family reads as its own module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsl import graph
from engine.dsl.issue import Issue, Location, Path, Severity
from engine.dsl.model import AnyNode, Flow
from engine.dsl.source import SourceMap
from engine.nodetypes.registry import Registry


@dataclass(frozen=True, slots=True)
class Site:
    """One node and where it sits: its path, its scope (list) and the foreach nodes around it."""

    node: AnyNode
    path: Path
    scope: str
    enclosing: tuple[str, ...] = ()


@dataclass
class CheckerBase:
    flow: Flow
    registry: Registry
    source: SourceMap | None
    file: str
    issues: list[Issue] = field(default_factory=list)
    sites: dict[str, Site] = field(default_factory=dict)
    scopes: dict[str, list[Site]] = field(default_factory=dict)
    ancestry: dict[str, graph.Ancestry] = field(default_factory=dict)
    used_secrets: set[str] = field(default_factory=set)
    # nodes whose needs/on_error name nothing: their scope's ancestry is partial
    broken_needs: set[str] = field(default_factory=set)
    # second and later nodes with a taken id: checked on their own; the graph uses the first
    duplicates: list[Site] = field(default_factory=list)

    # --- reporting ------------------------------------------------------------------------------------------

    def report(
        self,
        code: str,
        message: str,
        path: Path,
        *,
        hint: str = "",
        node_id: str | None = None,
        key: bool = False,
        severity: Severity = "error",
        line: int = 0,
    ) -> None:
        """Record an issue at ``path`` (its key when ``key``; ``line`` N of a multi-line text value)."""
        if self.source is None:
            location = Location(self.file)
        elif line > 1:
            location = self.source.locate_in_value(path, line)
        else:
            location = self.source.locate(path, key=key)
        self.issues.append(Issue(code, message, location, path, node_id, hint, severity))


def strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, str):
            yield where, current
        elif isinstance(current, Mapping):
            stack.extend(((*where, k), v) for k, v in reversed(list(current.items())))
        elif isinstance(current, list | tuple):
            stack.extend(((*where, k), v) for k, v in reversed(list(enumerate(current))))
