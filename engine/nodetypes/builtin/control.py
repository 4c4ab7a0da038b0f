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
)

APPROVAL = NodeType(
    name="approval",
    family="control",
    summary="Pause the run until a person approves or rejects (UI/API); optional timeout and on_timeout.",
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
)

TYPES = [FOREACH, APPROVAL]
