"""The node-type registry: what each ``type:`` of a FluxGraph node accepts, returns, needs and costs.

One registry for every step type; built-ins register exactly the way extensions do (``Registry.register``), and
``engine.nodetypes.builtin`` is only the first caller. The registry is pure data plus pure hooks, so the
validator, the co-pilot and the UI can all read it without touching I/O. How a type *executes* lives elsewhere
(``engine/steps/``, later) and is looked up by the same name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.netpolicy import Target
from engine.errors import IonfluxError

NAME = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?$")

#: The C-ION unit: 1 C-ION is US$0.001 of metered cost (provider spend plus platform compute).
USD_PER_CION = 0.001


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a node visibly needs, derived from the literal parts of its ``with`` (expressions are unknown)."""

    targets: frozenset[Target] = frozenset()
    max_tokens: int | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """A forecast of one execution of a node, in C-ION, and the basis a person can check it against."""

    cion: float
    basis: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A type-specific problem in a node's ``with``; ``path`` is relative to ``with``, ``line`` is the line inside
    a multi-line text value (inline code), 0 when the whole value is meant."""

    path: tuple[str | int, ...]
    code: str
    message: str
    hint: str = ""
    line: int = 0


def no_requirements(with_: Mapping[str, Any]) -> Requirements:
    return Requirements()


def no_findings(with_: Mapping[str, Any]) -> Iterable[Finding]:
    return ()


def default_cost(with_: Mapping[str, Any]) -> CostEstimate:
    return CostEstimate(0.01, "flat: 0.01 C-ION per execution")


def flat_cost(cion: float, basis: str) -> Callable[[Mapping[str, Any]], CostEstimate]:
    """A cost hook for types whose cost does not depend on their parameters."""

    def cost(with_: Mapping[str, Any]) -> CostEstimate:
        return CostEstimate(cion, basis)

    return cost


@dataclass(frozen=True, slots=True)
class NodeType:
    """A registered node type.

    ``with_schema`` and ``output_schema`` are JSON Schemas (2020-12). ``capabilities`` names the kinds of
    authority the type uses (``net``, ``secrets``, ``llm``, ``smtp``, ``bus``, ``sandbox``, ``flows``,
    ``human``); ``requires`` derives the concrete needs of one node; ``cost`` forecasts one execution;
    ``check`` finds type-specific mistakes a schema cannot express (a JMESPath syntax error, say).
    ``item_expressions`` names ``with`` fields holding a bare expression the step evaluates once per item,
    with ``item`` and ``index`` defined (``data.filter``'s ``where``); the validator checks their references.
    """

    name: str
    family: str
    summary: str
    with_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    capabilities: frozenset[str] = frozenset()
    requires: Callable[[Mapping[str, Any]], Requirements] = no_requirements
    cost: Callable[[Mapping[str, Any]], CostEstimate] = default_cost
    check: Callable[[Mapping[str, Any]], Iterable[Finding]] = no_findings
    item_expressions: frozenset[str] = frozenset()
    example: Mapping[str, Any] = field(default_factory=dict)
    # the node's own fields beside `with` and those every node has (foreach: items, concurrency, do), as a JSON
    # Schema object, and an example of them (the catalog shows both; the validator checks them on the model)
    node_fields: Mapping[str, Any] = field(default_factory=dict)
    node_example: Mapping[str, Any] = field(default_factory=dict)
    # what people call this kind of step, in English (Jules's offline planner finds types by these and the summary)
    keywords: tuple[str, ...] = ()
    # derived, reusable objects (e.g. the compiled `with` validator), kept with the type they belong to
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise RegistryError(
                f"node type name {self.name!r} must look like family.action (lower case, e.g. 'http.request')"
            )


class RegistryError(IonfluxError, ValueError):
    """Raised when a node type is defined or registered wrongly (a bad name, a duplicate, a frozen registry)."""

    code = "registry.invalid"


class UnknownNodeTypeError(IonfluxError):
    """Raised when a node type is looked up that nobody registered."""

    code = "node.unknown_type"


class Registry:
    """Node types by name. Register built-ins and extensions the same way."""

    def __init__(self, types: Iterable[NodeType] = ()) -> None:
        self._types: dict[str, NodeType] = {}
        self._frozen = False
        for t in types:
            self.register(t)

    def freeze(self) -> Registry:
        """Refuse further registrations (the shared built-in registry is frozen)."""
        self._frozen = True
        return self

    def register(self, node_type: NodeType, *, replace: bool = False) -> NodeType:
        if self._frozen:
            raise RegistryError(
                f"cannot register {node_type.name!r}: this registry is read-only",
                hint="build your own: registry = register_builtins(Registry()); registry.register(...)",
            )
        if node_type.name in self._types and not replace:
            raise RegistryError(
                f"node type {node_type.name!r} is already registered",
                hint="pass replace=True to override it",
            )
        self._types[node_type.name] = node_type
        return node_type

    def get(self, name: str) -> NodeType:
        try:
            return self._types[name]
        except KeyError:
            suggestion = self.suggest(name)
            hint = f"did you mean {suggestion!r}?" if suggestion else "run `ionflux types` to list the node types"
            raise UnknownNodeTypeError(f"unknown node type {name!r}", hint=hint) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[NodeType]:
        return iter(sorted(self._types.values(), key=lambda t: (t.family, t.name)))

    def __len__(self) -> int:
        return len(self._types)

    def names(self) -> list[str]:
        return sorted(self._types)

    def suggest(self, name: str) -> str | None:
        """The registered name closest to ``name``, if one is close enough to be a likely typo."""
        matches = difflib.get_close_matches(name, self._types, n=1, cutoff=0.6)
        return matches[0] if matches else None
