"""A flow as a model answers it in structured mode: the FluxGraph fields a planned flow uses, as a pydantic model
instructor turns into a tool (or JSON) schema. A provider that enforces the schema (llama.cpp by grammar, hosted
tools APIs) can then only answer something shaped like a flow; the validator still judges what it says."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class NodeDraft(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(description="lower_snake_case, unique in the flow")
    type: str = Field(description="one of the node types listed, exactly")
    needs: list[str] = Field(default_factory=list, description="ids of the nodes it runs after")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="the type's fields")
    if_: str | None = Field(None, alias="if", description='a condition, e.g. "{{ nodes.x.output.ok }}"')
    items: str | None = Field(None, description="foreach only: the list to loop over, an expression")
    do: list[NodeDraft] = Field(default_factory=list, description="foreach only: the steps run per item")
    permissions: dict[str, Any] | None = Field(None, description='e.g. {"net": ["api.example.com"]}')


class TriggerDraft(BaseModel):
    type: Literal["manual", "cron", "webhook", "event"]
    cron: str | None = Field(None, description='cron only: five fields, e.g. "30 8 * * 1-5"')
    timezone: str | None = Field(None, description="cron only: an IANA zone, e.g. Europe/Lisbon")
    subject: str | None = Field(None, description="event only: e.g. orders.created")


class FlowDraft(BaseModel):
    id: str = Field(description="lower-case-with-dashes")
    name: str
    description: str = ""
    triggers: list[TriggerDraft]
    nodes: list[NodeDraft]
    secrets: list[str] = Field(default_factory=list, description="the secret names the nodes read")
    on_failure: list[NodeDraft] = Field(default_factory=list, description="nodes run once if a run fails")

    def to_yaml(self) -> str:
        """The flow as FluxGraph YAML (empty and unset fields left out, as a person would write it)."""
        data: dict[str, Any] = {"fluxgraph": 1, **self.model_dump(by_alias=True, exclude_none=True)}
        return yaml.safe_dump(_pruned(data), sort_keys=False, allow_unicode=True, width=110)


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v not in ([], {}, "") or k in ("with", "nodes")}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value
