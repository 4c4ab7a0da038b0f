"""The Catalog screens: ``/ui/catalog`` (the node types this installation knows, by family, searchable; the agents,
i.e. the model aliases) and ``/ui/catalog/{type}`` (a type's ``with`` JSON Schema as a table and as it is, its
output schema, and its example as a FluxGraph node to copy).

Read-only and the same for every signed-in visitor. What is listed is what ``/api/v1/catalog`` lists: the
runtime's registry (built-ins and extensions) and model aliases, through ``engine.runtime.catalog``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from engine.nodetypes.registry import NodeType, Registry
from engine.runtime import catalog
from engine.runtime.catalog import TypeEntry
from engine.runtime.runtime import Runtime
from ui.rendering import page, templates
from ui.visitor import Visitor, visitor

router = APIRouter(prefix="/ui/catalog", include_in_schema=False)

Who = Annotated[Visitor, Depends(visitor)]
MAX_DEPTH = 3  # nested object fields shown in a schema's table (deeper ones are in the raw schema)


# `foreach` takes no `with`: what it repeats is the node's own `items` and `do` (engine.dsl.model.ForeachNode)
@dataclass(frozen=True)
class Field:
    """One row of a schema's table."""

    path: str  # "auth.type" for a nested field
    depth: int
    kind: str  # "string", "array of string", "string or number", "any"
    limits: str  # "at least 1 character", "1 to 200000", "pattern ^…$"
    required: bool
    description: str
    default: str  # as JSON, "" when there is none
    choices: tuple[str, ...]  # enum (or const) values, as JSON


@dataclass(frozen=True)
class SchemaView:
    kind: str  # of the whole value: "object", "array", "any"
    fields: tuple[Field, ...]
    open: bool  # an object that takes other keys than those listed (data.set: any keys)
    raw: str  # the schema as JSON, indented


@dataclass(frozen=True)
class Family:
    name: str
    types: tuple[TypeEntry, ...]


def ticks(text: str) -> Markup:
    """A summary's `backticked` words as code (the summaries are written for docs/node-types.md too)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


# the catalog templates' formatting (names prefixed: the Jinja environment is shared by every screen)
templates.env.filters["catalog_ticks"] = ticks
SECRET_USE = re.compile(r"\bsecrets\.([A-Za-z_][A-Za-z0-9_]*)")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _registry(request: Request) -> Registry:
    return _runtime(request).orchestrator.registry


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


# --- search -------------------------------------------------------------------------------------------------


def matches(node_type: NodeType, query: str) -> bool:
    """Every word of ``query`` is in the type's name, family, summary, capabilities or keywords (any case)."""
    text = " ".join(
        (node_type.name, node_type.family, node_type.summary, *node_type.capabilities, *node_type.keywords)
    ).casefold()
    return all(word in text for word in query.casefold().split())


def families(registry: Registry, query: str = "") -> list[Family]:
    found = [catalog.entry(t) for t in registry if matches(t, query)]  # the registry lists by family, then name
    return [Family(name, tuple(types)) for name, types in groupby(found, key=lambda t: t.family)]


# --- schemas as tables --------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def kind(schema: Mapping[str, Any]) -> str:
    """What a value of ``schema`` is, in a few words."""
    if not isinstance(schema, Mapping):
        return "any"
    if "const" in schema:
        return f"exactly {_json(schema['const'])}"
    variants = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(variants, list) and variants:
        return " or ".join(dict.fromkeys(_variant(v) for v in variants))
    declared = schema.get("type")
    if isinstance(declared, list):
        return " or ".join(str(t) for t in declared)
    if declared == "array":
        items = schema.get("items")
        return f"array of {kind(items)}" if isinstance(items, Mapping) and items else "array"
    if declared == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, Mapping) and values and "properties" not in schema:
            return f"object of {kind(values)}"
        return "object"
    if isinstance(declared, str):
        return declared
    if isinstance(schema.get("enum"), list):
        return " or ".join(dict.fromkeys(_json_type(v) for v in schema["enum"]))
    return "any"


def _variant(schema: Any) -> str:
    """A oneOf/anyOf branch; an object told apart by a constant field reads as ``object (type: bearer)``."""
    if isinstance(schema, Mapping):
        for name, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, Mapping) and "const" in sub:
                return f"object ({name}: {_json(sub['const'])})"
    return kind(schema) if isinstance(schema, Mapping) else "any"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "object" if isinstance(value, dict) else "array"


def limits(schema: Mapping[str, Any]) -> str:
    """The schema's bounds in words ("at least 1 character", "0 to 2", "2 to 20 items", a pattern)."""
    said = []
    for low, high, unit in (
        ("minLength", "maxLength", " characters"),
        ("minimum", "maximum", ""),
        ("minItems", "maxItems", " items"),
    ):
        lo, hi = schema.get(low), schema.get(high)
        if lo is not None and hi is not None:
            said.append(f"{lo} to {hi}{unit}")
        elif lo is not None:
            said.append(f"at least {lo}{unit}")
        elif hi is not None:
            said.append(f"at most {hi}{unit}")
    if "pattern" in schema:
        said.append(f"pattern {schema['pattern']}")
    if "format" in schema:
        said.append(f"format {schema['format']}")
    return ", ".join(said).replace("at least 1 characters", "at least 1 character")


def _rows(schema: Mapping[str, Any], prefix: str, depth: int) -> Iterator[Field]:
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    required = set(schema.get("required") or ())
    for name, sub in properties.items():
        sub = sub if isinstance(sub, Mapping) else {}
        enum = sub.get("enum")
        yield Field(
            f"{prefix}{name}",
            depth,
            kind(sub),
            limits(sub),
            name in required,
            str(sub.get("description") or sub.get("title") or ""),
            _json(sub["default"]) if "default" in sub else "",
            tuple(_json(v) for v in enum) if isinstance(enum, list) else (),
        )
        if depth + 1 < MAX_DEPTH:
            yield from _rows(sub, f"{prefix}{name}.", depth + 1)


def schema_view(schema: Mapping[str, Any]) -> SchemaView:
    """A JSON Schema as a table of its fields (nested objects' fields as ``parent.child``) and as it is."""
    plain = json.loads(json.dumps(schema))  # the registry's schemas are read-only mappings
    fields = tuple(_rows(plain, "", 0))
    extra = plain.get("additionalProperties", True)
    return SchemaView(kind(plain), fields, kind(plain) == "object" and extra is not False, json.dumps(plain, indent=2))


# --- the example as a node ----------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line text (inline code) as a ``|`` block, as flows are written, not as one quoted line."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def example_node(node_type: NodeType) -> dict[str, Any]:
    """The type's example as a FluxGraph node (its id made from the type's name), with the network permissions it
    needs to validate."""
    node: dict[str, Any] = {"id": node_type.name.replace(".", "_"), "type": node_type.name}
    if node_type.example:
        node["with"] = json.loads(json.dumps(node_type.example))
    node.update(json.loads(json.dumps(node_type.node_example)))
    reaches = node_type.requires(node_type.example).targets
    if reaches:  # the validator refuses a request to a host the node's permissions do not list
        node["permissions"] = {"net": sorted(str(t) for t in reaches)}
    return node


def example_yaml(node_type: NodeType) -> str:
    """The example node as the lines to paste under a flow's ``nodes:`` (indented two spaces, as flows are)."""
    text = yaml.dump(
        [example_node(node_type)], Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))


# --- routes -------------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def catalog_page(request: Request, who: Who, q: str = "") -> HTMLResponse:
    """The node types by family and the agents; an htmx request (the search box) gets just the types."""
    query = q.strip()[:200]
    registry = _registry(request)
    context = {
        "families": families(registry, query),
        "q": query,
        "total": len(registry),
        "agents": catalog.agents(_runtime(request).config.llm_models),
    }
    return page(request, "catalog_list.html" if _htmx(request) else "catalog.html", who, context)


@router.get("/{name}", response_class=HTMLResponse)
def type_page(request: Request, name: str, who: Who) -> HTMLResponse:
    """A node type: its `with` and output schemas (tables and raw) and its example as a node to copy."""
    registry = _registry(request)
    if name not in registry:
        missing = {"name": name, "suggestion": registry.suggest(name)}
        return page(request, "catalog_missing.html", who, missing, status=404)
    node_type = registry.get(name)
    example = example_yaml(node_type)
    context = {
        "entry": catalog.entry(node_type),
        "keywords": node_type.keywords,
        "with_schema": schema_view(node_type.with_schema),
        "node_fields": schema_view(node_type.node_fields) if node_type.node_fields else None,
        "output_schema": schema_view(node_type.output_schema),
        "example": example,
        "secrets": sorted(set(SECRET_USE.findall(example))),
        "foreach": node_type.name == "foreach",
    }
    return page(request, "catalog_type.html", who, context)
