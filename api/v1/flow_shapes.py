"""The shapes of the flows API (``/api/v1/flows``): request bodies and answers, as the OpenAPI schema shows them.

The flow bodies are read by dependencies (to cap their size before parsing), so FastAPI cannot derive their
schemas: :data:`FLOW_BODY` and :data:`IMPORT_BODY` declare them by hand.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.config import JsonDict

from api.v1.deps import Page, RequestBody
from api.v1.errors import ApiError, ErrorBody, Problem
from engine.dsl.model import FLOW_ID_PATTERN
from engine.dsl.source import Limits

MAX_YAML_BYTES = 1_000_000  # one flow document
MAX_IMPORT_FLOWS = 50
MAX_JSON_BYTES = 2 * MAX_YAML_BYTES + 1024  # a JSON body carrying one document (escapes make it longer)
MAX_IMPORT_BYTES = 8 * MAX_YAML_BYTES
YAML_TYPES = frozenset({"", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain"})
JSON_TYPES = frozenset({"application/json"})
LIMITS = Limits()  # a JSON document is held to what the YAML reader allows a flow
INT64 = 2**63
M = TypeVar("M", bound=BaseModel)


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
    """A flow's YAML wrapped in JSON."""

    yaml: str = Field(description="the FluxGraph document as YAML text (at most 1 MB)", json_schema_extra=_DOCUMENT)


# The document's own schema is large (flows/fluxgraph.schema.json, with every node type's `with`) and the
# validator checks all of it with located issues, so the API's schema names only what tells the shape apart.
FLOW_DOCUMENT: JsonDict = {
    "title": "FlowDocument",
    "type": "object",
    "description": "the FluxGraph document itself as JSON (docs/fluxgraph.md; its JSON Schema is "
    "flows/fluxgraph.schema.json). It is stored as its canonical YAML, as `ionflux fmt` writes it, so it gets the "
    "same version id as the same flow sent as YAML; its issues are located by path (`nodes[1].needs[0]`)",
    "required": ["fluxgraph", "id", "nodes"],
    "properties": {
        "fluxgraph": {"const": 1},
        "id": {"type": "string", "pattern": FLOW_ID_PATTERN},
        "nodes": {"type": "array", "items": {"type": "object"}},
    },
}
YAML_SCHEMA: JsonDict = {"type": "string", "maxLength": MAX_YAML_BYTES, "description": "a FluxGraph document"}
_EXAMPLE_NODES = [{"id": "greet", "type": "text.template", "with": {"template": "Hello, {{ inputs.name }}!"}}]
FLOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a flow: its YAML (application/yaml or text/plain), or JSON: the FluxGraph document itself "
        '(`{"fluxgraph": 1, "id": …, "nodes": […]}`) or its YAML wrapped as `{"yaml": "…"}`',
        "content": {
            "application/yaml": {"schema": YAML_SCHEMA},
            "text/plain": {"schema": YAML_SCHEMA},
            "application/json": {
                "schema": {"anyOf": [FLOW_DOCUMENT, FlowSource.model_json_schema()]},
                "examples": {
                    "document": {
                        "summary": "the FluxGraph document as JSON",
                        "value": {"fluxgraph": 1, "id": "hello-json", "nodes": _EXAMPLE_NODES},
                    },
                    "wrapped": {
                        "summary": "its YAML, wrapped",
                        "value": {
                            "yaml": "fluxgraph: 1\nid: hello-json\nnodes:\n  - id: greet\n    type: text.template\n"
                            '    with: {template: "Hello, {{ inputs.name }}!"}\n'
                        },
                    },
                },
            },
        },
    }
}


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


class FlowPage(Page[FlowItem]):
    """Your flows, by id."""


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


class VersionPage(Page[VersionOut]):
    """A flow's versions, newest first."""


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


class Activate(RequestBody):
    version: str | None = Field(None, min_length=1, max_length=80, description="default: the latest version")


class Activation(BaseModel):
    id: str
    active_version: str | None
    armed_triggers: list[ArmedTrigger]


class ImportRequest(BaseModel):
    flows: list[Annotated[str, Field(json_schema_extra=_DOCUMENT)] | dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_IMPORT_FLOWS,
        description="FluxGraph documents, each as YAML text or as a JSON object (at most 50, each at most 1 MB)",
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


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ImportRequest.model_json_schema()},
            "application/yaml": {
                "schema": {"type": "string", "description": "flows as YAML, several separated by lines of ---"}
            },
        },
    }
}


Submitted = str | dict[str, Any]  # a flow as sent: YAML text, or a FluxGraph document sent as JSON


# --- reading bodies (dependencies, so a body is capped before it is parsed) -----------------------------------------


async def _capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "request.too_large", f"the body is over {limit:,} bytes", hint="send a smaller body")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _invalid(field: str, message: str, hint: str) -> ApiError:
    return ApiError(
        422, "request.invalid", f"{field}: {message}", hint=hint, location=[{"field": field, "message": message}]
    )


class _NotJson(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # JSON parsers keep the last of two equal keys without a word; a flow's YAML refuses them, so JSON does too
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _NotJson(f"the key {key!r} is twice in one object")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _json(body: bytes) -> Any:
    """The body as JSON (422 ``request.invalid``, saying where, when it is not)."""
    hint = "send valid JSON (check it with `jq . file.json`), with Content-Type: application/json"
    try:
        return json.loads(body, object_pairs_hook=_unique, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise _invalid("body", f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", hint) from None
    except UnicodeDecodeError as e:
        raise _invalid("body", f"not UTF-8 text (byte {e.start})", hint) from None
    except RecursionError:
        raise _invalid("body", f"nested deeper than {LIMITS.max_depth} levels", "flatten the data") from None
    except _NotJson as e:
        raise _invalid("body", str(e), hint) from None


def _dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _unkeepable(data: dict[str, Any]) -> tuple[str, str, str] | None:
    """Where a JSON document holds what a flow's YAML may not, so that it could not be stored as YAML: nesting
    deeper or more values than the YAML reader allows, a number out of range. -> (path, what, how to fix)."""
    small = "keep flows small: pass large data as run input, or fetch it in a step"
    todo: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    count = 0
    while todo:
        path, value = todo.pop()
        count += 1
        if count > LIMITS.max_values:
            return "", f"more than {LIMITS.max_values:,} values", small
        if isinstance(value, dict | list):
            if len(path) >= LIMITS.max_depth:
                return _dotted(path), f"nested deeper than {LIMITS.max_depth} levels", small
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            todo.extend(((*path, k), v) for k, v in pairs)
        elif isinstance(value, float) and not math.isfinite(value):
            return _dotted(path), "a number too large for a float", "write it as a string"
        elif isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
            return _dotted(path), "an integer over 64 bits", "write it as a string"
    return None


def document(data: dict[str, Any], where: str = "body") -> dict[str, Any]:
    """A FluxGraph document sent as JSON, if YAML can hold it (422 ``request.invalid`` at its path otherwise);
    ``where``: the document's place in the request."""
    problem = _unkeepable(data)
    if problem is not None:
        path, what, fix = problem
        raise _invalid(where + path, what, fix)
    return data


def _model(kind: type[M], data: Any) -> M:
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None


def too_large(text: str) -> bool:
    return len(text) > MAX_YAML_BYTES or len(text.encode()) > MAX_YAML_BYTES


def too_large_error() -> ApiError:
    return ApiError(
        413, "request.too_large", f"the flow is over {MAX_YAML_BYTES:,} bytes", hint="move large data out of the flow"
    )


async def flow_body(request: Request) -> Submitted:
    """The submitted flow: a YAML body; or JSON, the FluxGraph document itself or ``{"yaml": "…"}``."""
    media = _media_type(request)
    if media in JSON_TYPES:
        data = _json(await _capped(request, MAX_JSON_BYTES))
        if isinstance(data, dict) and "fluxgraph" in data:
            return document(data)
        if isinstance(data, dict) and "yaml" in data:
            text = _model(FlowSource, data).yaml
            if too_large(text):
                raise too_large_error()
            return text
        raise _invalid(
            "body",
            'a flow sent as JSON is the FluxGraph document itself (with "fluxgraph": 1) or {"yaml": "…"}; '
            "this is neither",
            hint='add "fluxgraph": 1 to the document, or wrap its YAML as {"yaml": "…"}',
        )
    if media not in YAML_TYPES:
        raise ApiError(
            415,
            "request.unsupported_media_type",
            f"a flow is sent as application/yaml, text/plain or application/json, not {media}",
            hint='e.g. Content-Type: application/yaml, or JSON: the document itself or {"yaml": "…"}',
        )
    body = await _capped(request, MAX_YAML_BYTES)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(422, "request.invalid", f"the flow is not UTF-8 text (byte {e.start})") from None


async def import_body(request: Request) -> ImportRequest:
    """JSON ``{"flows": […]}``, or YAML: one flow as ``GET /flows/{id}/export`` gives it, or several in one stream
    separated by lines of ``---`` (so an export imports as it is)."""
    media = _media_type(request)
    if media in JSON_TYPES:
        return _model(ImportRequest, _json(await _capped(request, MAX_IMPORT_BYTES)))
    if media not in YAML_TYPES:
        raise ApiError(
            415,
            "request.unsupported_media_type",
            f"an import is JSON or YAML, not {media}",
            hint='send {"flows": ["yaml" or {…}, …]} as application/json, or flows as application/yaml '
            "(several separated by lines of ---)",
        )
    body = await _capped(request, MAX_IMPORT_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(422, "request.invalid", f"the flows are not UTF-8 text (byte {e.start})") from None
    documents = [d for d in YAML_DOCUMENT_SEPARATOR.split(text) if d.strip() and not _only_comments(d)]
    return _model(ImportRequest, {"flows": documents})


YAML_DOCUMENT_SEPARATOR = re.compile(r"(?m)^---[ \t]*$\n?")


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


# routes take the caller before the body: who may not write is refused before their body is read
FlowBody = Annotated[Submitted, Depends(flow_body)]
