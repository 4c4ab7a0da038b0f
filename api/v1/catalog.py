"""The catalog (``/api/v1/catalog``): the node types this installation knows (with their schemas) and the model
aliases (agents) its LLM steps may name. Read-only, the same for every owner."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.v1.deps import Reader, RuntimeDep
from api.v1.errors import ApiError
from api.v1.flow_shapes import problems
from engine.nodetypes.registry import NodeType
from engine.runtime import catalog

router = APIRouter(prefix="/catalog", tags=["catalog"])


class TypeSummary(BaseModel):
    name: str
    family: str
    summary: str
    capabilities: list[str] = Field(description="net, secrets, llm, smtp, bus, sandbox, flows, human")
    cost: str = Field(description="how one execution is priced, in C-ION")
    cost_cion: float = Field(description="the forecast of one execution of the type's example")


class TypeDetail(TypeSummary):
    with_schema: dict[str, Any] = Field(alias="with", description="JSON Schema (2020-12) of the node's `with`")
    output_schema: dict[str, Any] = Field(alias="output", description="JSON Schema of the node's output")
    example: dict[str, Any] = Field(description="an example `with`")
    fields: dict[str, Any] = Field(
        description="JSON Schema of the node's own fields beside `with` and those every node has (foreach: items, "
        "concurrency, do; approval: on_timeout); empty for most types"
    )
    example_fields: dict[str, Any] = Field(description="an example of those fields")
    keywords: list[str]

    model_config = ConfigDict(populate_by_name=True)


class Agent(BaseModel):
    name: str = Field(description="the alias a node names as `with.model`")
    model: str = Field(description="the model it routes to (litellm name)")
    priced: bool = Field(description="per-token prices are configured (otherwise litellm's price list is used)")


def _summary(node_type: NodeType) -> dict[str, Any]:
    return asdict(catalog.entry(node_type))


@router.get("/types", response_model=list[TypeSummary], responses=problems())
def list_types(_who: Reader, runtime: RuntimeDep) -> list[TypeSummary]:
    """Every node type (built-ins and extensions), by family."""
    return [TypeSummary(**_summary(t)) for t in runtime.orchestrator.registry]


@router.get("/types/{name}", response_model=TypeDetail, response_model_by_alias=True, responses=problems(404, 422))
def show_type(
    name: Annotated[str, Path(min_length=1, max_length=80, description="e.g. http.request")],
    _who: Reader,
    runtime: RuntimeDep,
) -> TypeDetail:
    """A node type with its `with` and output JSON Schemas and an example."""
    registry = runtime.orchestrator.registry
    if name not in registry:
        suggestion = registry.suggest(name)
        raise ApiError(
            404,
            "node_type.not_found",
            f"unknown node type {name!r}",
            hint=f"did you mean {suggestion!r}?" if suggestion else "GET /api/v1/catalog/types lists them",
        )
    node_type = registry.get(name)
    return TypeDetail(
        **_summary(node_type),
        with_schema=dict(node_type.with_schema),
        output_schema=dict(node_type.output_schema),
        example=dict(node_type.example),
        fields=dict(node_type.node_fields),
        example_fields=dict(node_type.node_example),
        keywords=list(node_type.keywords),
    )


@router.get("/agents", response_model=list[Agent], responses=problems())
def list_agents(_who: Reader, runtime: RuntimeDep) -> list[Agent]:
    """The model aliases configured here (never their keys or servers)."""
    return [Agent(name=a.name, model=a.model, priced=a.priced) for a in catalog.agents(runtime.config.llm_models)]
