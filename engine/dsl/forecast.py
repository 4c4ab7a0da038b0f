"""Cost forecasts in C-ION, from the node catalog's cost hooks.

A node's limits apply before its cost is forecast: an LLM node without ``max_tokens`` runs with
``permissions.max_tokens`` as its cap, so that cap (not the type's default) is what it can cost.
Nodes inside a ``foreach`` are forecast per item, since the number of items is only known at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.dsl.model import AnyNode, ApprovalNode, Flow, ForeachNode, StepNode
from engine.nodetypes.registry import CostEstimate, Registry


@dataclass(frozen=True, slots=True)
class NodeForecast:
    node_id: str
    type: str
    estimate: CostEstimate
    per_item: bool  # inside a foreach: multiply by the number of items


@dataclass(frozen=True, slots=True)
class FlowForecast:
    nodes: tuple[NodeForecast, ...]

    @property
    def fixed_cion(self) -> float:
        """Forecast of the nodes that run at most once per run."""
        return round(sum(n.estimate.cion for n in self.nodes if not n.per_item), 4)

    @property
    def per_item_cion(self) -> float:
        """Forecast added per foreach item."""
        return round(sum(n.estimate.cion for n in self.nodes if n.per_item), 4)


def effective_with(node: StepNode | ApprovalNode) -> dict[str, Any]:
    """``with`` as the step will run it, limits applied (the engine passes the same values)."""
    with_ = dict(node.with_)
    perms = node.permissions
    if perms is not None and perms.max_tokens is not None and "max_tokens" not in with_:
        with_["max_tokens"] = perms.max_tokens
    return with_


def node_forecast(node: AnyNode, registry: Registry) -> CostEstimate:
    node_type = registry.get(node.type)
    return node_type.cost(effective_with(node) if isinstance(node, StepNode | ApprovalNode) else {})


def _walk(nodes: tuple[AnyNode, ...], per_item: bool) -> Iterator[tuple[AnyNode, bool]]:
    for n in nodes:
        yield n, per_item
        if isinstance(n, ForeachNode):
            yield from _walk(n.do, True)


def flow_forecast(flow: Flow, registry: Registry) -> FlowForecast:
    """Upper-bound forecast of one run, excluding on_failure nodes (they run only when the run fails)."""
    return FlowForecast(
        tuple(
            NodeForecast(n.id, n.type, node_forecast(n, registry), per_item)
            for n, per_item in _walk(flow.nodes, False)
            if n.type in registry
        )
    )
