"""The JSON Schema of the whole FluxGraph language, generated from the models and the node catalog.

Committed as ``flows/fluxgraph.schema.json`` (a test fails when it is stale), so editors validate flow YAML as
you type: point the YAML language server at it with ``# yaml-language-server: $schema=fluxgraph.schema.json``.
Each registered node type adds an ``if type == X then with: <X's schema>`` clause, so ``with`` is checked too.
"""

from __future__ import annotations

import json
from typing import Any

from engine.dsl.model import Flow
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

SCHEMA_ID = "https://ionflux.dev/schemas/fluxgraph-v1.json"


def flow_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or builtin_registry()
    schema = Flow.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    clauses = [
        {
            "if": {"properties": {"type": {"const": t.name}}, "required": ["type"]},
            "then": {"properties": {"with": accepting_expressions(dict(t.with_schema))}},
        }
        for t in registry
        if t.name != "foreach"
    ]
    for name in ("StepNode", "ApprovalNode"):
        if name in defs:
            defs[name]["allOf"] = clauses
    if "StepNode" in defs:
        defs["StepNode"]["properties"]["type"]["examples"] = registry.names()
        # the model routes these two types to their own node kinds; without this an approval node matches both
        # StepNode and ApprovalNode, and `oneOf` rejects it
        defs["StepNode"]["properties"]["type"]["not"] = {"enum": ["foreach", "approval"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "FluxGraph v1 flow",
        "description": "An IONFLUX workflow. See docs/fluxgraph.md.",
        **{k: v for k, v in schema.items() if k not in ("title",)},
    }


#: Any string holding a template: its value is only known at run time, so an editor must not flag it.
TEMPLATE_STRING = {"type": "string", "pattern": r"\{\{|\{%"}


def accepting_expressions(schema: dict[str, Any]) -> dict[str, Any]:
    """Let every value inside ``with`` also be a template string (the validator checks those more precisely)."""

    def wrap(sub: Any) -> Any:
        return {"anyOf": [deep(sub), TEMPLATE_STRING]} if isinstance(sub, dict) else sub

    def deep(sub: dict[str, Any]) -> dict[str, Any]:
        out = dict(sub)
        if isinstance(out.get("properties"), dict):
            out["properties"] = {k: wrap(v) for k, v in out["properties"].items()}
        for key in ("items", "additionalProperties"):
            if isinstance(out.get(key), dict):
                out[key] = wrap(out[key])
        for key in ("anyOf", "oneOf"):
            if isinstance(out.get(key), list):
                out[key] = [deep(m) if isinstance(m, dict) else m for m in out[key]]
        return out

    return deep(schema)


def render(registry: Registry | None = None) -> str:
    return json.dumps(flow_json_schema(registry), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
