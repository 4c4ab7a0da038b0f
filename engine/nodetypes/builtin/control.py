"""Control built-ins: ``foreach`` and ``approval``. Their structure (``items``, ``do``, ``on_timeout``) lives on
the node itself (see engine.dsl.model); the registry gives them a ``with`` schema, an output and a cost like any
other type. Conditions are ``if:`` on any node and parallelism is implicit, so they need no type."""

from __future__ import annotations

from engine.nodetypes.builtin._schema import STRING, obj
from engine.nodetypes.registry import NodeType, flat_cost

FOREACH = NodeType(
    name="foreach",
    family="control",
    summary="Run the nested `do` nodes once per item of `items` (bounded `concurrency`); output: ordered list.",
    with_schema=obj({}),
    output_schema={"type": "array"},
    cost=flat_cost(0.0, "free; the nested nodes cost per item"),
    node_fields=obj(
        {
            "items": {
                "description": "the list to go through: a list, or an expression giving one",
                "oneOf": [{"type": "array"}, STRING],
            },
            "concurrency": {
                "description": "how many items run at once (the output keeps the items' order)",
                "type": "integer",
                "minimum": 1,
                "maximum": 100,
                "default": 1,
            },
            "do": {
                "description": "the nodes to run per item (they read item and index)",
                "type": "array",
                "minItems": 1,
                "items": {"type": "object"},
            },
        },
        "items",
        "do",
    ),
    node_example={
        "items": "{{ nodes.fetch.output.body.orders }}",
        "do": [{"id": "tell", "type": "log", "with": {"message": "order {{ item.id }}"}}],
    },
)

APPROVAL = NodeType(
    name="approval",
    family="control",
    summary="Pause the run until a person approves or rejects (UI/API); after `timeout`, `on_timeout` decides.",
    with_schema=obj(
        {
            "message": STRING,
            "approvers": {"type": "array", "items": {"type": "string", "minLength": 1}},
        }
    ),
    output_schema=obj(
        {
            "approved": {"type": "boolean"},
            "by": {"type": ["string", "null"]},
            "comment": {"type": ["string", "null"]},
            "decided_at": STRING,
        },
        "approved",
    ),
    capabilities=frozenset({"human"}),
    cost=flat_cost(0.0, "free"),
    example={"message": "Send the weekly digest to all customers?"},
    node_fields=obj(
        {
            "on_timeout": {
                "description": "what the node's timeout (a field every node has, e.g. 2d) decides when nobody answered",
                "enum": ["reject", "approve"],
                "default": "reject",
            },
        }
    ),
    node_example={"timeout": "2d", "on_timeout": "reject"},
)

TYPES = [FOREACH, APPROVAL]
