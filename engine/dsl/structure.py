"""Pydantic's structural errors, rewritten as located, actionable FluxGraph issues.

Pydantic says ``nodes.0.step.need: Extra inputs are not permitted``; a person needs
``flow.yaml:7:5 [node fetch] unknown field 'need'; did you mean 'needs'?``. This module strips pydantic's union
tags from error paths, finds the line of the offending key or value, names the node and suggests the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from engine.dsl import model as m
from engine.dsl.issue import Issue, Location, Path
from engine.dsl.source import SourceMap

NODE_LISTS = ("nodes", "do", "on_failure")
NODE_TAGS = {"step", "foreach", "approval"}
TRIGGER_TAGS = {"manual", "webhook", "cron", "event", "flow"}


def _aliases(*models: type[BaseModel]) -> list[str]:
    names: dict[str, None] = {}
    for model in models:
        for name, f in model.model_fields.items():
            names[f.alias or name] = None
    return list(names)


FIELDS_BY_CONTEXT: dict[str, list[str]] = {
    "flow": _aliases(m.Flow),
    "node": _aliases(m.StepNode, m.ForeachNode, m.ApprovalNode),
    "trigger": _aliases(m.ManualTrigger, m.WebhookTrigger, m.CronTrigger, m.EventTrigger, m.FlowTrigger),
    "retry": _aliases(m.Retry),
    "permissions": _aliases(m.Permissions),
    "budget": _aliases(m.Budget),
    "signature": _aliases(m.Signature),
}

# a node's fields by its kind: a foreach has no `with`, a step no `do`
NODE_FIELDS: dict[str, list[str]] = {
    "foreach": _aliases(m.ForeachNode),
    "approval": _aliases(m.ApprovalNode),
    "step": _aliases(m.StepNode),
}

_MISSING_HINTS = {
    "fluxgraph": "start the document with `fluxgraph: 1`",
    "id": "give it an id: a slug for a flow (weekly-digest), an identifier for a node (fetch_orders)",
    "nodes": "a flow needs a list of nodes, e.g. nodes: [{id: hello, type: log, with: {message: hi}}]",
    "type": "every node and trigger needs a type; run `ionflux types` for node types",
    "items": "a foreach needs items: a list or an expression such as {{ nodes.fetch.output.body }}",
    "do": "a foreach needs a `do:` list with the nodes to run per item",
    "cron": "a cron trigger needs a schedule, e.g. cron: '30 8 * * MON-FRI'",
    "subject": "an event trigger needs a NATS subject, e.g. subject: orders.created",
}

_PATTERN_MESSAGES = {
    m.FLOW_ID_PATTERN: (
        "is not a valid flow id",
        "use a slug: lower-case letters, digits and '-', starting with a letter or digit (max 64)",
    ),
    m.NODE_ID_PATTERN: (
        "is not a valid node id",
        "use letters, digits and '_' and start with a letter (it is written nodes.<id> in expressions)",
    ),
    m.TYPE_PATTERN: ("is not a valid node type name", "types look like family.action, e.g. http.request"),
    m.HOST_PATTERN: (
        "is not a host pattern",
        "write a host name (api.example.com), a wildcard (*.example.com), an IP, optionally with :port",
    ),
}

_TYPE_WORDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "text",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}


def strip_tags(loc: Sequence[str | int]) -> Path:
    """Remove pydantic's union tags (``nodes.0.step.with`` -> ``nodes.0.with``)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i >= 2 and isinstance(loc[i - 1], int) and isinstance(part, str):
            container = loc[i - 2]
            if (container in NODE_LISTS and part in NODE_TAGS) or (container == "triggers" and part in TRIGGER_TAGS):
                continue
        out.append(part)
    return tuple(out)


def node_id_at(data: Any, path: Path) -> str | None:
    """The id of the innermost node that ``path`` points into, if the document says one."""
    found: str | None = None
    current = data
    for i, part in enumerate(path):
        if isinstance(current, Mapping):
            current = current.get(part) if isinstance(part, str) else None
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            if i >= 1 and path[i - 1] in NODE_LISTS and isinstance(current, Mapping):
                node_id = current.get("id")
                found = node_id if isinstance(node_id, str) else found
        else:
            break
    return found


def _node_type_at(data: Any, path: Path) -> str:
    """The kind of the node mapping at ``path`` (foreach, approval or step), as the model tells them apart."""
    current = data
    for part in path:
        if isinstance(current, Mapping) and isinstance(part, str):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            return "step"
    kind = current.get("type") if isinstance(current, Mapping) else None
    return kind if kind in ("foreach", "approval") else "step"


def context_of(path: Path) -> str:
    """Which construct the mapping at ``path`` is: flow, node, trigger, retry, permissions, budget, signature."""
    if not path:
        return "flow"
    last = path[-1]
    if isinstance(last, int) and len(path) >= 2:
        if path[-2] in NODE_LISTS:
            return "node"
        if path[-2] == "triggers":
            return "trigger"
    if isinstance(last, str) and last in FIELDS_BY_CONTEXT:
        return last
    return ""


def did_you_mean(guess: str | None) -> str:
    """The "; did you mean 'x'?" suffix of a message, or nothing when no choice is close."""
    return f"; did you mean '{guess}'?" if guess else ""


def suggest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def structural_issues(error: ValidationError, data: Any, source: SourceMap | None, file: str) -> list[Issue]:
    raw = error.errors(include_url=False)
    paths = [strip_tags(e["loc"]) for e in raw]
    issues: list[Issue] = []
    for err, path in zip(raw, paths, strict=True):
        if err["type"] == "too_short" and any(p[: len(path)] == path and p != path for p in paths):
            continue  # "nodes must not be empty" only because every node in it failed: noise
        issues.append(_issue(err, path, data, source, file))
    return issues


def _issue(err: ErrorDetails, path: Path, data: Any, source: SourceMap | None, file: str) -> Issue:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    field = str(path[-1]) if path else "document"
    node_id = node_id_at(data, path)
    key_location = False
    hint = ""
    code = "schema.invalid_value"

    if kind == "missing":
        code = "schema.missing"
        message = f"missing required field '{field}'"
        hint = _MISSING_HINTS.get(field, f"add `{field}:`")
    elif kind == "extra_forbidden":
        code = "schema.unknown_field"
        key_location = True
        context = context_of(path[:-1])
        kind_of_node = _node_type_at(data, path[:-1]) if context == "node" else None
        allowed = NODE_FIELDS.get(kind_of_node or "", FIELDS_BY_CONTEXT.get(context, []))
        guess = suggest(field, [a for a in allowed if a != field])  # never "unknown 'with'; did you mean 'with'?"
        message = f"unknown field '{field}'" + did_you_mean(guess)
        hint = f"rename it to '{guess}'" if guess else ("allowed fields: " + ", ".join(allowed) if allowed else "")
        if kind_of_node == "foreach" and field == "with":
            message = "a foreach takes no `with`"
            hint = "put `items:` (a list or an expression), `do:` and `concurrency:` on the foreach node itself"
    elif kind == "union_tag_invalid":
        code = "trigger.unknown_type"
        tag = str(ctx.get("tag", value))
        guess = suggest(tag, sorted(TRIGGER_TAGS))
        message = f"unknown trigger type '{tag}'" + did_you_mean(guess)
        hint = "trigger types: " + ", ".join(sorted(TRIGGER_TAGS))
        path = (*path, "type")
    elif kind in ("union_tag_not_found", "node_shape") and isinstance(value, Mapping):
        code = "schema.missing"
        message = "missing required field 'type'"
        path = (*path, "type")
        hint = "trigger types: " + ", ".join(sorted(TRIGGER_TAGS)) if "triggers" in path else _MISSING_HINTS["type"]
    elif kind in ("union_tag_not_found", "node_shape"):
        code = "schema.invalid_type"
        what = "trigger" if "triggers" in path else "node"
        message = f"a {what} must be a mapping with a `type`, not {_describe(value)}"
        hint = "write it as `- id: ...` / `type: ...` lines under the list"
    elif kind == "literal_error":
        if path == ("fluxgraph",) and isinstance(value, str):
            code = "schema.invalid_type"
            message = f"`fluxgraph` must be the number 1, not the text {value!r}"
            hint = "remove the quotes: fluxgraph: 1"
        elif path == ("fluxgraph",):
            code = "schema.unsupported_version"
            message = f"unsupported FluxGraph version {value!r}; this IONFLUX reads version 1"
            hint = "set `fluxgraph: 1`"
        else:
            expected = str(ctx.get("expected", ""))
            choices = [c.strip().strip("'") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            guess = suggest(str(value), choices)
            message = f"invalid {field} {value!r}; expected {expected}" + (
                f" (did you mean '{guess}'?)" if guess else ""
            )
            hint = f"use one of: {', '.join(choices)}"
    elif kind == "string_pattern_mismatch":
        if "secrets" in path or field == "secret":
            what, hint = (
                "is not a valid secret name",
                "secret names use letters, digits and '_' (e.g. shop_token)",
            )
        else:
            what, hint = _PATTERN_MESSAGES.get(str(ctx.get("pattern")), ("does not have the expected form", ""))
        message = f"{value!r} {what}"
    elif kind in _TYPE_WORDS:
        code = "schema.invalid_type"
        message = f"'{field}' must be {_TYPE_WORDS[kind]}, not {_describe(value)}"
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            hint = "expressions are evaluated only in `with`, `if`, `items` and `outputs`; write a literal here"
        elif isinstance(value, str) and kind in ("int_type", "float_type", "bool_type"):
            hint = "remove the quotes so YAML reads it as a number/boolean"
        elif kind in ("tuple_type", "list_type"):
            hint = f"write a list, e.g. {field}: [{value if isinstance(value, str) else '...'}]"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            hint = f"write a mapping of fields under `{field}:`"
        else:
            hint = f"write {_TYPE_WORDS[kind]} here"
    elif kind in (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
    ):
        code = "schema.out_of_range"
        message, hint = _range_message(kind, field, value, ctx)
    elif kind == "duration":
        message = f"'{field}': {ctx.get('reason', err['msg'])}"
        hint = "write a duration like 500ms, 30s, 1m30s, 2h or 1d (or a number of seconds)"
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
        hint = _VALUE_HINTS.get(field, "")
        if field == "retry" and "max_delay" in message:
            path = (*path, "max_delay")
    else:
        message = f"'{field}': {err['msg']}"
        hint = "see docs/fluxgraph.md for this field"
    location = source.locate(path, key=key_location) if source else Location(file)
    return Issue(code, message, location, path=path, node_id=node_id, hint=hint)


_VALUE_HINTS = {
    "budget": "e.g. budget: {max_cion_per_run: 10}",
    "retry": "raise max_delay or lower initial_delay",
}


def _range_message(kind: str, field: str, value: Any, ctx: Mapping[str, Any]) -> tuple[str, str]:
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        hint = "add at least one node" if field in NODE_LISTS else f"give at least {least}"
        return (
            f"'{field}' needs at least {least} item{'s' if least != 1 else ''}, it has {ctx.get('actual_length', 0)}",
            hint,
        )
    if kind == "too_long":
        return f"'{field}' has more than {ctx.get('max_length')} items", f"keep at most {ctx.get('max_length')}"
    bound = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", "≥"), "less_than": ("lt", "<")}.get(
        kind, ("le", "≤")
    )
    limit = ctx.get(bound[0])
    return f"'{field}' must be {bound[1]} {limit}, not {_describe(value)}", f"use a value {bound[1]} {limit}"


def _describe(value: Any) -> str:
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"text {value!r}" if len(value) < 40 else f"text {value[:37]!r}…"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)
