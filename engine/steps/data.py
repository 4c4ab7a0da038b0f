"""Executors for the data built-ins: ``data.set``, ``data.filter``, ``json.extract``, ``text.template``, ``log``.

They need no outside world, so they run in the worker process directly (no sandbox): they only move data that
is already in the run, through the same sandboxed expression language the flow itself uses.
"""

from __future__ import annotations

import json
from typing import Any

import jmespath
import jmespath.exceptions

from engine.dsl.expression import ExpressionError, evaluate, parse_bare
from engine.steps.call import StepCall, StepFailure
from engine.steps.registry import ExecutorRegistry


def data_set(call: StepCall) -> Any:
    return dict(call.with_)


def data_filter(call: StepCall) -> Any:
    items = call.with_.get("items")
    if not isinstance(items, list):
        raise StepFailure("step.invalid_input", f"with.items must be a list, got {type(items).__name__}")
    where = str(call.with_.get("where", "true"))
    limit = call.with_.get("limit")
    try:
        template = parse_bare(where)
    except ExpressionError as e:
        raise StepFailure(e.code, f"with.where: {e.message}") from None
    kept: list[Any] = []
    for index, item in enumerate(items):
        context = {**call.context, "item": item, "index": index}
        try:
            keep = evaluate(template.source, context)
        except ExpressionError as e:
            raise StepFailure(e.code, f"with.where on item {index}: {e.message}") from None
        if keep:
            kept.append(item)
            if isinstance(limit, int) and len(kept) >= limit:
                break
    return kept


def json_extract(call: StepCall) -> Any:
    data, path = call.with_.get("data"), str(call.with_.get("path", ""))
    if call.with_.get("syntax", "jmespath") == "path":
        return _dotted(data, path)
    try:
        return jmespath.search(path, data)
    except jmespath.exceptions.JMESPathError as e:
        raise StepFailure("step.invalid_input", f"with.path: {str(e).splitlines()[0]}") from None


def _dotted(data: Any, path: str) -> Any:
    current = data
    for part in [p for p in path.replace("[", ".").replace("]", "").split(".") if p]:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            shown = json.dumps(current, default=str)[:80]
            raise StepFailure("step.path_not_found", f"path {path!r}: no {part!r} in {shown}")
    return current


def text_template(call: StepCall) -> Any:
    text = call.with_.get("template", "")
    return {"text": text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)}


def log(call: StepCall) -> Any:
    message = call.with_.get("message", "")
    call.log.append(
        (str(call.with_.get("level", "info")), message if isinstance(message, str) else json.dumps(message))
    )
    return None


def register(registry: ExecutorRegistry) -> None:
    registry.register("data.set", data_set)
    registry.register("data.filter", data_filter)
    registry.register("json.extract", json_extract)
    registry.register("text.template", text_template)
    registry.register("log", log)
