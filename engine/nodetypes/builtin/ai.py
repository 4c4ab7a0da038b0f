"""AI built-ins: ``llm.complete``, ``llm.extract``, ``llm.classify`` (litellm + instructor at run time).

The cost hook forecasts from the node's ``max_tokens`` and a static per-alias price table; the engine replaces
the forecast with the provider's real token counts when the step runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.dsl.metaschema import schema_problem
from engine.nodetypes.builtin._schema import ANY, NON_EMPTY, STRING, literal_int, obj
from engine.nodetypes.registry import CostEstimate, Finding, NodeType, Requirements

DEFAULT_MAX_TOKENS = 1024
#: Forecast prices in C-ION per 1,000 tokens (prompt + completion), by model alias. Unknown models use "default".
ALIAS_CION_PER_1K_TOKENS = {"cheap": 0.5, "default": 2.0, "smart": 15.0}
PROMPT_TOKEN_ALLOWANCE = 500

_MODEL = {
    "type": "string",
    "minLength": 1,
    "default": "default",
    "description": "alias (default/cheap/smart)",
}
_COMMON = {
    "model": _MODEL,
    "system": STRING,
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": 200_000},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
}
_USAGE = obj(
    {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "cost_cion": {"type": "number"},
    },
    "prompt_tokens",
    "completion_tokens",
)


def _requires(with_: Mapping[str, Any]) -> Requirements:
    model = with_.get("model", "default")
    return Requirements(
        max_tokens=literal_int(with_.get("max_tokens")),
        model=model if isinstance(model, str) else None,
    )


def _token_cost(default_max_tokens: int) -> Callable[[Mapping[str, Any]], CostEstimate]:
    def cost(with_: Mapping[str, Any]) -> CostEstimate:
        model = with_.get("model", "default")
        alias = model if isinstance(model, str) and model in ALIAS_CION_PER_1K_TOKENS else "default"
        tokens = (literal_int(with_.get("max_tokens")) or default_max_tokens) + PROMPT_TOKEN_ALLOWANCE
        price = ALIAS_CION_PER_1K_TOKENS[alias]
        return CostEstimate(
            round(tokens / 1000 * price, 4),
            f"up to {tokens} tokens x {price} C-ION/1k ({alias} model price)",
        )

    return cost


#: ``secrets`` used inside an expression (``{{ ... }}`` or ``{% ... %}``)
_SECRET_IN_EXPRESSION = re.compile(r"\{[{%](?:(?![}%]\}).)*\bsecrets\b", re.DOTALL)


def _secret_fields(value: Any, path: tuple[str | int, ...]) -> Iterable[tuple[str | int, ...]]:
    if isinstance(value, str):
        if _SECRET_IN_EXPRESSION.search(value):
            yield path
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _secret_fields(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secret_fields(v, (*path, i))


def _no_secrets(with_: Mapping[str, Any]) -> Iterable[Finding]:
    """Whatever an LLM node's fields hold is sent to the model's provider: a secret must never be among it."""
    for path in _secret_fields(with_, ()):
        yield Finding(
            path,
            "node.secret_to_llm",
            "an LLM node cannot use `secrets`: its text is sent to the model's provider",
            "pass the data the model needs, not credentials; the provider's own key goes in IONFLUX_LLM_MODELS",
        )


def _schema_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    yield from _no_secrets(with_)
    schema = with_.get("schema")
    if isinstance(schema, dict):
        problem = schema_problem(schema)
        if problem is not None:
            yield Finding(
                ("schema", *problem.path),
                "node.with_invalid",
                f"`schema` is not a valid JSON Schema: {problem.message}",
                "write a JSON Schema (2020-12), e.g. {type: object, properties: {name: {type: string}}}",
            )


def _labels_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    yield from _no_secrets(with_)
    labels = with_.get("labels")
    if isinstance(labels, list) and len(set(map(str, labels))) != len(labels):
        yield Finding(("labels",), "node.with_invalid", "labels must be unique", "remove the repeated label")


LLM_COMPLETE = NodeType(
    name="llm.complete",
    family="ai",
    summary="Generate text with an LLM (any provider litellm reaches, hosted or local).",
    with_schema=obj({**_COMMON, "prompt": NON_EMPTY, "stream": {"type": "boolean", "default": False}}, "prompt"),
    output_schema=obj({"text": STRING, "model": STRING, "usage": _USAGE}, "text", "model"),
    capabilities=frozenset({"llm"}),
    requires=_requires,
    cost=_token_cost(DEFAULT_MAX_TOKENS),
    check=_no_secrets,
    example={
        "model": "default",
        "prompt": "Summarise: {{ nodes.fetch.output.body | tojson }}",
        "max_tokens": 400,
    },
)

LLM_EXTRACT = NodeType(
    name="llm.extract",
    family="ai",
    summary="Extract structured data that validates against a JSON Schema (instructor, bounded re-asks).",
    with_schema=obj(
        {
            **_COMMON,
            "prompt": NON_EMPTY,
            "schema": {"type": "object"},
            "max_retries": {"type": "integer", "minimum": 0, "maximum": 5, "default": 2},
        },
        "prompt",
        "schema",
    ),
    output_schema=ANY,
    capabilities=frozenset({"llm"}),
    requires=_requires,
    cost=_token_cost(DEFAULT_MAX_TOKENS),
    check=_schema_check,
    example={
        "prompt": "Extract the customer and amount: {{ trigger.body.text }}",
        "schema": {
            "type": "object",
            "properties": {"customer": {"type": "string"}, "amount": {"type": "number"}},
        },
    },
)

LLM_CLASSIFY = NodeType(
    name="llm.classify",
    family="ai",
    summary="Classify text into one of the given labels; returns the label and a confidence.",
    with_schema=obj(
        {
            **_COMMON,
            "input": NON_EMPTY,
            "labels": {"type": "array", "items": NON_EMPTY, "minItems": 2, "maxItems": 50},
            "instructions": STRING,
        },
        "input",
        "labels",
    ),
    output_schema=obj(
        {"label": STRING, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "label", "confidence"
    ),
    capabilities=frozenset({"llm"}),
    requires=_requires,
    cost=_token_cost(16),
    check=_labels_check,
    example={"input": "{{ trigger.body.text }}", "labels": ["billing", "bug", "question"]},
)

TYPES = [LLM_COMPLETE, LLM_EXTRACT, LLM_CLASSIFY]
