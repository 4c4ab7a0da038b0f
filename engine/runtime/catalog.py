"""The catalog: what an installation knows, as the API (``/api/v1/catalog``) and the web UI (``/ui/catalog``) both
list it: its node types, each with the forecast of one execution of its example, and the model aliases (agents)
its LLM steps may name, with the litellm model each routes to (never their keys or servers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.nodetypes.registry import NodeType
from engine.steps.llm import DEFAULT_MODELS, ModelRoute


@dataclass(frozen=True, slots=True)
class TypeEntry:
    """A node type as the catalog lists it."""

    name: str
    family: str
    summary: str
    capabilities: tuple[str, ...]  # sorted: net, secrets, llm, smtp, bus, sandbox, flows, human
    cost: str  # how one execution is priced, in words
    cost_cion: float  # the forecast of one execution of the type's example


@dataclass(frozen=True, slots=True)
class Agent:
    """A model alias a node names as ``with.model``."""

    name: str
    model: str  # the litellm model it routes to
    priced: bool  # per-token prices are configured (otherwise litellm's price list is used)
    built_in: bool  # one of the built-in aliases, unchanged (otherwise set by IONFLUX_LLM_MODELS)


def entry(node_type: NodeType) -> TypeEntry:
    estimate = node_type.cost(node_type.example)
    return TypeEntry(
        node_type.name,
        node_type.family,
        node_type.summary,
        tuple(sorted(node_type.capabilities)),
        estimate.basis,
        estimate.cion,
    )


def agents(models: Mapping[str, ModelRoute] | None) -> list[Agent]:
    """The aliases of a runtime's ``config.llm_models`` (None: the built-in defaults), by name."""
    routes = models if models is not None else DEFAULT_MODELS
    return [
        Agent(
            alias,
            route.model,
            route.input_cost_per_token is not None or route.output_cost_per_token is not None,
            DEFAULT_MODELS.get(alias) == route,
        )
        for alias, route in sorted(routes.items())
    ]
