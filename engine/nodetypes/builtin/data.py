"""Data built-ins: ``http.request``, ``json.extract``, ``data.set``, ``data.filter``, ``text.template``,
``log``, ``delay``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jmespath
import jmespath.exceptions

from engine.dsl.expression import has_template
from engine.nodetypes.builtin._schema import ANY, DURATION, NON_EMPTY, STRING, STRING_MAP, obj, targets_of, url_problem
from engine.nodetypes.registry import Finding, NodeType, Requirements, flat_cost

HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

_AUTH = {
    "oneOf": [
        obj({"type": {"const": "bearer"}, "token": NON_EMPTY}, "type", "token"),
        obj(
            {"type": {"const": "basic"}, "username": STRING, "password": STRING},
            "type",
            "username",
            "password",
        ),
        obj(
            {"type": {"const": "api_key"}, "header": NON_EMPTY, "value": NON_EMPTY},
            "type",
            "header",
            "value",
        ),
    ]
}


def _http_requires(with_: Mapping[str, Any]) -> Requirements:
    return Requirements(targets=targets_of(with_.get("url")))


def _http_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    body_kinds = [k for k in ("json", "form", "body") if k in with_]
    if len(body_kinds) > 1:
        yield Finding(
            (body_kinds[1],),
            "node.with_conflict",
            f"`{body_kinds[0]}` and `{body_kinds[1]}` both set the request body",
            "keep one of json (JSON body), form (URL-encoded form) or body (raw text)",
        )
    problem = url_problem(with_.get("url"))
    if problem is not None:
        yield Finding(("url",), "node.with_invalid", problem, "write the full URL: https://api.example.com/path")


HTTP_REQUEST = NodeType(
    name="http.request",
    family="data",
    summary="Call an HTTP API. SSRF-protected: only hosts in permissions.net are reachable.",
    with_schema=obj(
        {
            "method": {"enum": HTTP_METHODS, "default": "GET"},
            "url": {"type": "string", "minLength": 1, "description": "http(s) URL; may contain expressions"},
            "query": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "headers": STRING_MAP,
            "json": ANY,
            "form": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "body": STRING,
            "auth": _AUTH,
            "response": {"enum": ["auto", "json", "text", "bytes"], "default": "auto"},
            "success_status": {
                "type": "array",
                "items": {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[1-5]xx$"}]},
                "default": ["2xx"],
            },
            "follow_redirects": {"type": "boolean", "default": True},
            "max_redirects": {"type": "integer", "minimum": 0, "maximum": 10, "default": 5},
            "max_response_bytes": {"type": "integer", "minimum": 1, "maximum": 104_857_600},
            "idempotency_key": {"type": "boolean", "default": False},
        },
        "url",
    ),
    output_schema=obj(
        {
            "status": {"type": "integer"},
            "headers": STRING_MAP,
            "body": ANY,
            "url": STRING,
            "elapsed_ms": {"type": "number"},
        },
        "status",
        "headers",
        "body",
    ),
    capabilities=frozenset({"net", "secrets"}),
    requires=_http_requires,
    cost=flat_cost(0.05, "flat: 0.05 C-ION per request"),
    check=_http_check,
    example={
        "method": "GET",
        "url": "https://api.example.com/orders",
        "headers": {"Accept": "application/json"},
    },
)


def _jmespath_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    path = with_.get("path")
    if isinstance(path, str) and not has_template(path) and with_.get("syntax", "jmespath") == "jmespath":
        try:
            jmespath.compile(path)
        except jmespath.exceptions.JMESPathError as e:
            yield Finding(
                ("path",),
                "node.with_invalid",
                f"invalid JMESPath expression: {_jmespath_reason(e)}",
                "see https://jmespath.org for the syntax, e.g. orders[?total > `100`].id",
            )


def _jmespath_reason(error: jmespath.exceptions.JMESPathError) -> str:
    reason = str(error).splitlines()[0].removeprefix("Invalid jmespath expression: ").split(": Parse error")[0]
    reason = reason.removesuffix(", for expression:").rstrip(": ") or "invalid expression"
    position = getattr(error, "lex_position", None)
    return f"{reason} (at character {position + 1})" if isinstance(position, int) else reason


JSON_EXTRACT = NodeType(
    name="json.extract",
    family="data",
    summary="Pick values out of JSON with a JMESPath expression or a dotted path.",
    with_schema=obj(
        {"data": ANY, "path": NON_EMPTY, "syntax": {"enum": ["jmespath", "path"], "default": "jmespath"}},
        "data",
        "path",
    ),
    output_schema=ANY,
    check=_jmespath_check,
    example={"data": "{{ nodes.fetch.output.body }}", "path": "orders[?total > `100`].id"},
)

DATA_SET = NodeType(
    name="data.set",
    family="data",
    summary="Build a value from expressions; its output is the `with` mapping, evaluated.",
    with_schema={"type": "object"},
    output_schema={"type": "object"},
    example={"count": "{{ nodes.fetch.output.body.orders | length }}", "label": "weekly"},
)


DATA_FILTER = NodeType(
    name="data.filter",
    family="data",
    summary="Keep the items of a list for which `where` (evaluated per `item`) is true.",
    with_schema=obj(
        {
            "items": {"type": "array"},
            "where": {"type": "string", "minLength": 1, "description": "bare expression over item/index"},
            "limit": {"type": "integer", "minimum": 1},
        },
        "items",
        "where",
    ),
    output_schema={"type": "array"},
    item_expressions=frozenset({"where"}),
    example={"items": "{{ nodes.fetch.output.body.orders }}", "where": "item.total > 100"},
)

TEXT_TEMPLATE = NodeType(
    name="text.template",
    family="data",
    summary="Render a text template; the output is {text}.",
    with_schema=obj({"template": STRING}, "template"),
    output_schema=obj({"text": STRING}, "text"),
    example={"template": "Hello {{ inputs.name }}"},
)

LOG = NodeType(
    name="log",
    family="data",
    summary="Write a message to the run log.",
    with_schema=obj(
        {"message": STRING, "level": {"enum": ["debug", "info", "warning", "error"], "default": "info"}},
        "message",
    ),
    output_schema={"type": "null"},
    cost=flat_cost(0.0, "free"),
    example={"message": "fetched {{ nodes.fetch.output.body | length }} orders"},
)

DELAY = NodeType(
    name="delay",
    family="data",
    summary="Wait for a duration without holding a worker.",
    with_schema=obj({"duration": DURATION}, "duration"),
    output_schema={"type": "null"},
    cost=flat_cost(0.0, "free"),
    example={"duration": "5m"},
)

TYPES = [HTTP_REQUEST, JSON_EXTRACT, DATA_SET, DATA_FILTER, TEXT_TEMPLATE, LOG, DELAY]
