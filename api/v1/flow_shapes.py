"""The shapes of the flows API (``/api/v1/flows``): request bodies and answers, as the OpenAPI schema shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from api.v1.errors import ErrorBody, Problem

MAX_YAML_BYTES = 1_000_000  # one flow document
MAX_IMPORT_FLOWS = 50


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The refusals a route documents (always 401 and 403: every route needs a token with a scope)."""
    described = {
        401: "no valid token or session",
        403: "the token's scope does not allow this",
        404: "no such flow (or version) of yours",
        409: "the flow id belongs to another owner, or the flow cannot run here",
        413: "the body is too large",
        415: "the body's content type is not one this route reads",
        422: "the request or the flow is not valid (a flow's issues are in error.location.issues)",
    }
    return {s: {"model": Problem, "description": described[s]} for s in sorted({401, 403, *statuses})}


# the size of a document is checked in bytes by the route (413 request.too_large), so the schema only says it
_DOCUMENT: JsonDict = {"maxLength": MAX_YAML_BYTES}


class FlowSource(BaseModel):
    yaml: str = Field(description="the FluxGraph document (at most 1 MB)", json_schema_extra=_DOCUMENT)


class IssueOut(BaseModel):
    code: str
    severity: Literal["error", "warning"]
    message: str
    hint: str
    file: str
    line: int = Field(description="1-based; 0: unknown")
    column: int
    node_id: str | None
    path: str = Field(description="the field path, e.g. nodes[2].with.url")


class Validation(BaseModel):
    valid: bool
    issues: list[IssueOut]


class SavedFlow(BaseModel):
    id: str
    version: str
    created: bool = Field(description="the flow did not exist for you before (new, or brought back after delete)")
    new_version: bool = Field(description="this content was not stored before")


class TriggerSummary(BaseModel):
    types: list[str] = Field(description="the trigger types the latest version declares")
    armed: int = Field(description="how many triggers are armed now (of the active version)")


class FlowItem(BaseModel):
    id: str
    name: str | None
    description: str | None
    latest_version: str | None
    active_version: str | None
    created_at: datetime
    updated_at: datetime
    triggers: TriggerSummary


class FlowPage(BaseModel):
    items: list[FlowItem]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: this is the last")


class DeclaredTrigger(BaseModel):
    position: int
    type: str
    config: dict[str, Any]


class ArmedTrigger(BaseModel):
    position: int
    kind: Literal["webhook", "cron", "event"] | str
    version: str
    enabled: bool
    url: str | None = Field(None, description="a webhook's URL (keep it private: it starts runs)")
    cron: str | None = None
    timezone: str | None = None
    subject: str | None = None
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None


class ForecastNode(BaseModel):
    node_id: str
    type: str
    cion: float
    basis: str
    per_item: bool = Field(description="inside a foreach: per item")


class Forecast(BaseModel):
    fixed_cion: float
    per_item_cion: float
    nodes: list[ForecastNode]


class FlowDetail(FlowItem):
    tags: list[str]
    yaml: str = Field(description="the latest version as submitted")
    declared_triggers: list[DeclaredTrigger]
    armed_triggers: list[ArmedTrigger]
    forecast: Forecast


class VersionOut(BaseModel):
    id: str
    created_at: datetime
    latest: bool
    active: bool


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None


class VersionDetail(VersionOut):
    flow_id: str
    yaml: str


class NodeRef(BaseModel):
    id: str
    type: str


class NodeChangeOut(NodeRef):
    fields: list[str]


class EdgeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    kind: str


class StructuralDiff(BaseModel):
    old_version: str
    new_version: str
    added_nodes: list[NodeRef]
    removed_nodes: list[NodeRef]
    changed_nodes: list[NodeChangeOut]
    added_edges: list[EdgeOut]
    removed_edges: list[EdgeOut]
    changed_fields: list[str]


class FlowDiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    from_version: str = Field(alias="from")
    to_version: str = Field(alias="to")
    structural: StructuralDiff
    text: str = Field(description="a unified diff of the two YAML sources")


class Activate(BaseModel):
    version: str | None = Field(None, min_length=1, max_length=80, description="default: the latest version")


class Activation(BaseModel):
    id: str
    active_version: str | None
    armed_triggers: list[ArmedTrigger]


class ImportRequest(BaseModel):
    flows: list[Annotated[str, Field(json_schema_extra=_DOCUMENT)]] = Field(
        min_length=1, max_length=MAX_IMPORT_FLOWS, description="FluxGraph documents (at most 50, each at most 1 MB)"
    )


class ImportResult(BaseModel):
    index: int
    ok: bool
    id: str | None = None
    version: str | None = None
    created: bool | None = None
    error: ErrorBody | None = None
    issues: list[IssueOut] = Field(default_factory=list)


class ImportReport(BaseModel):
    saved: int
    failed: int
    results: list[ImportResult]
